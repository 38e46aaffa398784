"""Hardening over real sockets: the deployment's key never comes back, hop-by-hop headers the
upstream nominates are dropped, and the request limits (headers, messages, body pauses) hold."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from asgi_llm import CustomLogger
from asgi_llm.types import Receive, Scope, Send
from middlewares import hash_key
from tests.conftest import deployment
from tests.servers import Recorder, ServerThread, read_request

KEY = "sk-proj-Zq81vL0cPbX7tWm2Ra9Ee4Ko6Yu3Ns5Hd"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class LeakyUpstream:
    """An upstream that quotes the credentials it got, as many do, and nominates hop-by-hop headers.

    By model: ``bad-key`` 401 ``Incorrect API key provided: <key>``; ``forbidden`` 403 quoting the
    Authorization header as plain text; ``quote-400`` a 400 whose param and code carry key fragments;
    ``quote-500`` a plain-text 500 quoting the header; ``escaped`` a 400 whose key is JSON-escaped;
    ``hop`` a 200 (streamed when asked) that lists ``x-hop-secret`` in ``Connection``.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_request(receive))
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        key = auth.removeprefix("Bearer ")
        model = body["model"]
        if model == "bad-key":
            return await self.reply(send, 401, {"error": {"message": f"Incorrect API key provided: {key}.",
                                                          "type": "invalid_request_error", "code": "invalid_api_key"}})
        if model == "forbidden":
            return await self.reply(send, 403, f"proxy refused Authorization: {auth}".encode(), b"text/plain")
        if model == "quote-400":
            return await self.reply(send, 400, {"error": {"message": f"key {key[:12]}... is not allowed here, "
                                                          f"nor ...{key[-10:]}", "param": key, "code": key[5:20],
                                                          "type": "invalid_request_error"}})
        if model == "quote-500":
            return await self.reply(send, 500, f"upstream crashed handling Authorization: {auth}".encode(),
                                    b"text/plain")
        if model == "escaped":
            escaped = "".join(f"\\u{ord(c):04x}" for c in key)
            text = '{"error": {"message": "bad key ' + escaped + '", "type": "invalid_request_error"}}'
            return await self.reply(send, 400, text.encode())
        hop = [(b"connection", b"keep-alive, x-hop-secret"), (b"x-hop-secret", b"1"), (b"x-kept", b"yes")]
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"), *hop]})
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                     "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n"
                        + b"data: [DONE]\n\n"})
            return
        answer = {"id": "c", "object": "chat.completion", "created": 1, "model": model,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
        await self.reply(send, 200, answer, extra=hop)

    @staticmethod
    async def reply(send: Send, status: int, payload: Any, media: bytes = b"application/json",
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", media), *(extra or [])]})
        await send({"type": "http.response.body", "body": data})


class Failures(CustomLogger):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.seen.append(repr(kwargs) + repr(kwargs.get("standard_logging_object")))


@pytest.fixture(scope="module")
def leaky() -> Iterator[str]:
    with ServerThread(LeakyUpstream()) as server:
        yield server.url


def _leaks(text: str) -> list[str]:
    """Every fragment of KEY of six characters or more that appears in ``text``."""
    return [KEY[i:j] for i in range(len(KEY)) for j in range(i + 6, len(KEY) + 1) if KEY[i:j] in text]


@pytest.mark.parametrize("model", ["bad-key", "forbidden", "quote-400", "quote-500", "escaped"])
def test_the_deployments_key_never_comes_back(model: str, leaky: str, gateway_factory: Callable[..., str],
                                             caplog: pytest.LogCaptureFixture) -> None:
    failures = Failures()
    config = {"model_list": [{"model_name": model, "litellm_params": {
        "model": f"openai/{model}", "api_base": leaky + "/v1", "api_key": KEY}}]}
    base = gateway_factory(config, callbacks=[failures])
    with caplog.at_level(logging.DEBUG):
        resp = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": model}, timeout=10)
        deadline = time.monotonic() + 5
        while not failures.seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert failures.seen, "the failure callback never ran"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    everything = resp.text + json.dumps(dict(resp.headers)) + "".join(failures.seen) + caplog.text
    assert _leaks(everything) == []
    assert "[redacted]" in resp.text
    if model in ("bad-key", "forbidden"):  # the gateway's credentials, not the client's: a 5xx naming the deployment
        assert resp.status_code == 502 and error["code"] == "upstream_auth_failed"
        assert f"openai/{model}" in error["message"] and "api_key" in error["message"]
    else:
        assert resp.status_code == {"quote-400": 400, "quote-500": 500, "escaped": 400}[model]


@pytest.mark.parametrize("stream", [False, True])
def test_connection_nominated_headers_are_dropped(stream: bool, leaky: str, gateway_factory: Callable[..., str]
                                                  ) -> None:
    base = gateway_factory({"model_list": [deployment("hop", leaky + "/v1")]})
    resp = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "hop", "stream": stream}, timeout=10)
    assert resp.status_code == 200 and resp.headers["x-kept"] == "yes"
    assert "x-hop-secret" not in resp.headers
    assert "x-hop-secret" not in resp.headers.get("connection", "")


def test_request_headers_are_capped(gateway: str, gateway_factory: Callable[..., str],
                                    upstream: tuple[Recorder, str]) -> None:
    body = {**CHAT, "model": "echo"}
    big = httpx.post(gateway + "/v1/chat/completions", json=body, headers={"x-big": "a" * (1 << 20)}, timeout=10)
    assert big.status_code == 431 and big.json()["error"]["code"] == "request_headers_too_large"
    assert "max_request_header_kb" in big.json()["error"]["message"]
    assert httpx.post(gateway + "/v1/chat/completions", json=body, headers={"x-ok": "a" * 60_000},
                      timeout=10).status_code == 200  # under the 64 KiB default
    small = gateway_factory({"model_list": [deployment("echo", upstream[1] + "/v1")],
                             "general_settings": {"max_request_header_kb": 1}})
    assert httpx.post(small + "/v1/chat/completions", json=body, headers={"x-two-k": "a" * 2048},
                      timeout=10).status_code == 431


def test_content_must_be_text_or_parts(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    resp = httpx.post(gateway + "/v1/chat/completions", timeout=10,
                      json={"model": "echo", "messages": [{"role": "user", "content": [1, 2, 3]}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages[0].content[0]"
    assert recorder.requests == []
    parts = [{"type": "text", "text": "hi"}, "plain"]
    ok = httpx.post(gateway + "/v1/chat/completions", timeout=10,
                    json={"model": "echo", "messages": [{"role": "user", "content": parts}]})
    assert ok.status_code == 200 and recorder.requests[-1]["body"]["messages"][0]["content"] == parts


def test_messages_and_parts_are_capped(gateway: str, upstream: tuple[Recorder, str],
                                       gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    many = {"model": "echo", "messages": [{"role": "user", "content": "x"}] * 10_001}
    resp = httpx.post(gateway + "/v1/chat/completions", json=many, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
    assert "max_messages" in resp.json()["error"]["message"] and recorder.requests == []
    capped = gateway_factory({"model_list": [deployment("echo", url + "/v1")],
                              "general_settings": {"max_messages": 5}})
    parts = {"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 5}]}
    assert httpx.post(capped + "/v1/chat/completions", json=parts, timeout=10).status_code == 400  # 1 + 5 > 5
    four = {"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 4}]}
    assert httpx.post(capped + "/v1/chat/completions", json=four, timeout=10).status_code == 200


def _raw_request(port: int, head: bytes, body: bytes, wait: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


FORM = b'--xyz\r\ncontent-disposition: form-data; name="model"\r\n\r\n'
FILE = b'\r\n--xyz\r\ncontent-disposition: form-data; name="file"; filename="a"\r\n\r\n'
STALLS = {
    "json": (b"application/json", b'{"model": "echo", '),
    "upload, in the model field": (b"multipart/form-data; boundary=xyz", FORM + b"ec"),
    "upload, in the file": (b"multipart/form-data; boundary=xyz",  # streaming upstream by then
                            FORM + b"echo" + FILE + b"RI"),
}


@pytest.mark.parametrize("stall", list(STALLS))
def test_a_client_that_sends_less_than_its_content_length_gets_408(stall: str, upstream: tuple[Recorder, str],
                                                                   gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory({"model_list": [deployment("echo", upstream[1] + "/v1")],
                            "general_settings": {"request_body_timeout": 0.5}})
    port = int(base.rsplit(":", 1)[1])
    media, part = STALLS[stall]
    path = b"/v1/chat/completions" if stall == "json" else b"/v1/audio/transcriptions"
    head = b"POST " + path + b" HTTP/1.1\r\nhost: x\r\ncontent-type: " + media + \
        b"\r\ncontent-length: 100000\r\n\r\n"
    started = time.monotonic()
    answer = _raw_request(port, head, part, wait=5)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_body_timeout" in answer and took < 3  # 0.5 s, checked every 0.125 s; not the 5 s socket wait


def test_an_upload_past_the_size_limit_is_413_not_an_upstream_error(upstream: tuple[Recorder, str],
                                                                     gateway_factory: Callable[..., str]) -> None:
    """Chunked, so no content-length tells in advance: the limit is found while the upload streams upstream."""
    base = gateway_factory({"model_list": [deployment("whisper", upstream[1] + "/v1")],
                            "general_settings": {"max_request_size_mb": 0.01}})

    def chunks() -> Iterator[bytes]:
        yield FORM + b"whisper" + FILE
        for _ in range(20):
            yield b"x" * 1024

    resp = httpx.post(base + "/v1/audio/transcriptions", content=chunks(), timeout=10,
                      headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


def test_authorization_without_bearer_says_so(upstream: tuple[Recorder, str],
                                              gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory({"model_list": [deployment("echo", upstream[1] + "/v1")],
                            "general_settings": {"master_key": "sk-master-1234"}})
    resp = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "echo"},
                      headers={"authorization": "sk-master-1234"}, timeout=10)
    assert resp.status_code == 401 and "Bearer" in resp.json()["error"]["message"]
    assert resp.json()["error"]["code"] == "invalid_auth_scheme"
    assert httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "echo"},
                      headers={"authorization": "Bearer sk-master-1234"}, timeout=10).status_code == 200


def test_a_keys_models_hold_for_uploads(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    config = {"model_list": [deployment("whisper", url + "/v1"), deployment("echo", url + "/v1")],
              "keys": [{"key_hash": hash_key("sk-echo-only"), "models": ["echo"]},
                       {"key_hash": hash_key("sk-whisper"), "models": ["whisper"]}]}
    base = gateway_factory(config)
    files = {"file": ("a.wav", b"RIFF" + b"\0" * 5000, "audio/wav")}
    refused = httpx.post(base + "/v1/audio/transcriptions", data={"model": "whisper"}, files=files,
                         headers={"authorization": "Bearer sk-echo-only"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    assert recorder.requests == []  # nothing went upstream
    allowed = httpx.post(base + "/v1/audio/transcriptions", data={"model": "whisper"}, files=files,
                         headers={"authorization": "Bearer sk-whisper"}, timeout=10)
    assert allowed.status_code == 200 and len(recorder.requests) == 1
    assert recorder.requests[0]["raw"].count(b"RIFF") == 1  # the upload went whole, once


def test_call_ids_are_random(gateway_factory: Callable[..., str], upstream: tuple[Recorder, str]) -> None:
    base = gateway_factory({"model_list": [deployment("echo", upstream[1] + "/v1")],
                            "general_settings": {"call_headers": True}})
    ids = [httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "echo"},
                      timeout=10).headers["x-asgi-llm-call-id"] for _ in range(3)]
    assert len(set(ids)) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 3  # no shared per-process prefix: one id says nothing of the next


def test_wrapped_app_gets_no_gateway_fields_and_only_configured_models(gateway_factory: Callable[..., str]) -> None:
    got: list[dict[str, Any]] = []

    async def existing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        got.append(json.loads((await receive())["body"]))
        await LeakyUpstream.reply(send, 200, {"object": "chat.completion", "choices": []})

    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
    base = gateway_factory(config, app=existing)
    body = {**CHAT, "model": "m", "metadata": {"tenant": "a"}, "api_base": "http://evil", "temperature": 0.1}
    assert httpx.post(base + "/v1/chat/completions", json=body, timeout=10).status_code == 200
    assert got == [{**CHAT, "model": "m", "temperature": 0.1}]
    unknown = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "other"}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model" and len(got) == 1

