"""Moderation in parallel with the model call, over real sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException

from asgi_llm import CustomLogger, UserAPIKeyAuth, parse_config
from asgi_llm.gateway import Gateway
from tests.conftest import make_config
from tests.servers import Recorder, ServerThread


class Moderator(CustomLogger):
    """Waits ``delay`` seconds, then passes or raises ``error``; records what it saw."""

    def __init__(self, delay: float = 0.0, error: BaseException | None = None) -> None:
        self.delay, self.error = delay, error
        self.seen: list[tuple[str, str]] = []

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> Any:
        self.seen.append((data["model"], call_type))
        data["messages"] = [{"role": "user", "content": "tampered"}]  # must not reach the upstream
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return "ignored"


def chat(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


@pytest.fixture
def start(upstream: tuple[Recorder, str]) -> Iterator[Any]:
    servers: list[ServerThread] = []

    def run(*hooks: CustomLogger, **general: Any) -> str:
        config = parse_config(make_config(upstream[1], models=["echo", "slow", "slow-stream", "firehose",
                                                               "delay-300"], **general))
        server = ServerThread(Gateway(config, callbacks=list(hooks))).__enter__()
        servers.append(server)
        return server.url + "/v1/chat/completions"

    yield run
    for server in servers:
        server.__exit__()


def test_moderation_runs_beside_the_call_not_before_it(start: Any, upstream: tuple[Recorder, str]) -> None:
    url = start(Moderator(delay=0.3))
    httpx.post(url, json=chat("echo"), timeout=10)  # warm the connection pool
    began = time.monotonic()
    resp = httpx.post(url, json=chat("delay-300"), timeout=10)
    took = time.monotonic() - began
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert 0.3 <= took < 0.55, f"{took:.3f}s: the two 300 ms waits were not overlapped"
    assert upstream[0].requests[-1]["body"]["messages"] == [{"role": "user", "content": "hi"}]  # not tampered


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_hook_cancels_the_upstream_call(stream: bool, start: Any, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    url = start(Moderator(delay=0.2, error=HTTPException(status_code=400, detail={"error": "Violated policy"})))
    model = "slow-stream" if stream else "slow"
    began = time.monotonic()
    resp = httpx.post(url, json=chat(model, stream), timeout=10)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["message"] == "Violated policy"
    deadline = time.monotonic() + 2
    while not any(m == model for m, _ in recorder.closed) and time.monotonic() < deadline:
        time.sleep(0.02)
    closed = [at for m, at in recorder.closed if m == model]
    assert closed and closed[0] - began < 1.0  # the upstream saw the close right away, not after 5 s


def test_plain_exceptions_give_500_and_nothing_leaks_before_the_verdict(start: Any) -> None:
    url = start(Moderator(error=ValueError("moderation service crashed")))
    resp = httpx.post(url, json=chat("echo", stream=True), timeout=10)
    assert resp.status_code == 500 and resp.json()["error"]["message"] == "moderation service crashed"


def test_stream_is_held_until_the_verdict_then_released_whole(start: Any) -> None:
    url = start(Moderator(delay=0.4))
    began = time.monotonic()
    with httpx.stream("POST", url, json=chat("echo", stream=True), timeout=10) as resp:
        chunks = resp.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - began
        text = first + b"".join(chunks)
    assert first_at >= 0.4 and text.decode().endswith("data: [DONE]\n\n") and text.count(b"data: ") == 4


def test_buffer_is_bounded_while_waiting(start: Any, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    url = start(Moderator(delay=1.5))
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    body = b'{"model":"firehose","stream":true,"messages":[{"role":"user","content":"x"}]}'
    sock = socket.create_connection((host, int(port)), timeout=5)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(1.0)  # the verdict is still 0.5 s away: only the bounded buffer may fill
        held = recorder.firehose_sent
        assert held < 16 * 1024 * 1024, f"upstream pushed {held} bytes before the verdict"
        received = 0
        deadline = time.monotonic() + 10
        while recorder.firehose_sent <= held and time.monotonic() < deadline:  # reading lets it flow again
            received += len(sock.recv(1 << 20))
        assert received > 0 and recorder.firehose_sent > held, f"still at {held} bytes after {received} read"
    finally:
        sock.close()


def test_timeout_policies(start: Any, caplog: pytest.LogCaptureFixture) -> None:
    closed = start(Moderator(delay=2), moderation_timeout=0.2)
    resp = httpx.post(closed, json=chat("echo"), timeout=10)
    assert resp.status_code == 503 and "moderation_timeout" in resp.json()["error"]["message"]
    opened = start(Moderator(delay=2), moderation_timeout=0.2, moderation_timeout_policy="fail_open")
    with caplog.at_level("WARNING", logger="asgi_llm.moderation"):
        resp = httpx.post(opened, json=chat("echo"), timeout=10)
    assert resp.status_code == 200 and "fail_open" in caplog.text


def test_every_hook_must_pass_and_each_sees_the_call(start: Any) -> None:
    first, second = Moderator(delay=0.05), Moderator(delay=0.1, error=HTTPException(status_code=403, detail="no"))
    url = start(first, second)
    resp = httpx.post(url, json=chat("echo"), timeout=10)
    assert resp.status_code == 403 and first.seen == second.seen == [("echo", "completion")]
    embed = httpx.post(url.replace("chat/completions", "embeddings"), json={"model": "echo", "input": "x"},
                       timeout=10)
    assert embed.status_code == 403 and second.seen[-1] == ("echo", "embeddings")


def test_hooks_see_the_end_user_without_an_auth_layer(start: Any) -> None:
    seen: list[UserAPIKeyAuth] = []

    class Spy(CustomLogger):
        async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                        call_type: str) -> Any:
            seen.append(user_api_key_dict)

    url = start(Spy())
    assert httpx.post(url, json={**chat("echo"), "user": "u-9"}, timeout=10).status_code == 200
    assert seen[-1].end_user_id == "u-9" and seen[-1].request_route == "/v1/chat/completions"
