"""Streaming hooks over real sockets: iterator hooks, per-chunk hooks, errors, the guardrail."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException

import asgi_llm.sse.codec
from asgi_llm import CustomLogger, UserAPIKeyAuth, parse_config
from asgi_llm.gateway import Gateway
from asgi_llm.hooks.response import unwrap
from examples.guardrail import BannedWords
from tests.conftest import make_config
from tests.servers import Recorder, ServerThread


def events(text: str) -> list[str]:
    return [e for e in text.split("\n\n") if e]


def contents(text: str) -> str:
    out = []
    for event in events(text):
        if event.startswith("data: {") and "choices" in json.loads(event[6:]):
            choice = json.loads(event[6:])["choices"][0]
            out.append(choice.get("delta", {}).get("content") or choice.get("text") or "")
    return "".join(out)


@pytest.fixture
def start(upstream: tuple[Recorder, str]) -> Iterator[Any]:
    servers: list[ServerThread] = []

    def run(*hooks: CustomLogger, models: list[str] | None = None) -> str:
        config = parse_config(make_config(upstream[1],
                                          models=models or ["echo", "split-secret", "cut-stream", "slow-stream"]))
        server = ServerThread(Gateway(config, callbacks=list(hooks))).__enter__()
        servers.append(server)
        return server.url

    yield run
    for server in servers:
        server.__exit__()


def stream(base: str, model: str = "echo", path: str = "/v1/chat/completions") -> httpx.Response:
    body: dict[str, Any] = {"model": model, "stream": True}
    body.update({"prompt": "x"} if "chat" not in path else {"messages": [{"role": "user", "content": "x"}]})
    return httpx.post(base + path, json=body, timeout=10)


class Upper(CustomLogger):
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: UserAPIKeyAuth,
                                                      response: AsyncIterator[Any],
                                                      request_data: dict[str, Any]) -> AsyncIterator[Any]:
        async for chunk in response:
            chunk.choices[0].delta.content = chunk.choices[0].delta.content.upper()  # attribute access, in place
            yield chunk


class DropFirstAddLast(CustomLogger):
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: UserAPIKeyAuth,
                                                      response: AsyncIterator[Any],
                                                      request_data: dict[str, Any]) -> AsyncIterator[Any]:
        held = []
        async for chunk in response:
            held.append(unwrap(chunk))  # hold everything back, release at the end
        for chunk in held[1:]:
            yield chunk
        extra = json.loads(json.dumps(held[-1]))
        extra["choices"][0]["delta"]["content"] = f" [{request_data['model']}]"
        yield extra


def test_iterator_hooks_chain_in_order(start: Any) -> None:
    resp = stream(start(DropFirstAddLast(), Upper()))
    assert resp.status_code == 200 and contents(resp.text) == " FROM UPSTREAM [ECHO]"
    assert resp.text.endswith("data: [DONE]\n\n")
    other = stream(start(Upper(), DropFirstAddLast()))
    assert contents(other.text) == " FROM UPSTREAM [echo]"  # order matters: Upper ran first


class Counting(CustomLogger):
    def __init__(self, replace_at: str | None = None, fail_at: str | None = None,
                 error: BaseException | None = None) -> None:
        self.seen: list[str] = []
        self.replace_at, self.fail_at, self.error = replace_at, fail_at, error

    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> Any:
        self.seen.append(response)
        if self.fail_at is not None and response.endswith(self.fail_at):
            raise self.error or RuntimeError("stream hook failed")
        if self.replace_at is not None and response.endswith(self.replace_at):
            return {"choices": [{"index": 0, "delta": {"content": "<replaced>"}, "finish_reason": None}]}
        return None


def test_per_chunk_hook_sees_text_so_far_and_can_replace(start: Any) -> None:
    hook = Counting(replace_at=" from")
    resp = stream(start(hook))
    assert hook.seen == ["Hello", "Hello from", "Hello from upstream"]
    assert contents(resp.text) == "Hello<replaced> upstream"


def test_raising_after_chunks_ends_with_an_error_event(start: Any, upstream: tuple[Recorder, str]) -> None:
    resp = stream(start(Counting(fail_at="w1 ")), "slow-stream")  # one event every 50 ms: w0 is out first
    out = events(resp.text)
    assert resp.status_code == 200 and contents(resp.text) == "w0 "
    assert json.loads(out[-2][6:])["error"]["message"] == "stream hook failed" and out[-1] == "data: [DONE]"
    deadline = time.monotonic() + 2
    while not any(m == "slow-stream" for m, _ in upstream[0].closed) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(m == "slow-stream" for m, _ in upstream[0].closed)  # the upstream call was stopped


def test_raising_before_anything_went_out_gives_a_status(start: Any) -> None:
    denied = stream(start(Counting(fail_at="Hello", error=HTTPException(status_code=451, detail="blocked"))))
    assert denied.status_code == 451 and denied.json()["error"]["message"] == "blocked"
    crashed = stream(start(Counting(fail_at="Hello")))
    assert crashed.status_code == 500 and crashed.json()["error"]["message"] == "stream hook failed"


def test_text_completion_streams_are_intercepted(start: Any) -> None:
    hook = Counting()
    base = start(hook, models=["echo"])  # "mock-model" is the in-process mock deployment
    resp = stream(base, "mock-model", "/v1/completions")
    assert resp.status_code == 200 and hook.seen and hook.seen[-1] == contents(resp.text)
    assert contents(resp.text).startswith("This is a mock response")


def test_each_event_is_parsed_once_however_many_hooks(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = asgi_llm.sse.codec._decode

    def counting(data: Any) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(asgi_llm.sse.codec, "_decode", counting)
    resp = stream(start(Upper(), Upper(), Counting(), Counting()))
    assert resp.status_code == 200 and len(calls) == 3  # three JSON events, [DONE] is never parsed


def test_upstream_cut_mid_stream_still_ends_cleanly(start: Any) -> None:
    resp = stream(start(Counting()), "cut-stream")
    out = events(resp.text)
    assert out[-1] == "data: [DONE]" and "error" in json.loads(out[-2][6:])


def test_guardrail_never_lets_a_banned_word_through(start: Any) -> None:
    base = start(BannedWords(["swordfish", "password"]))
    with httpx.stream("POST", base + "/v1/chat/completions", timeout=10,
                      json={"model": "split-secret", "stream": True,
                            "messages": [{"role": "user", "content": "x"}]}) as resp:
        raw = b"".join(resp.iter_raw()).decode()
    text = contents(raw)
    assert text == "The ******** is *********. Bye"
    seen_so_far = ""
    for event in events(raw):  # at no point does the client hold a banned word
        if event.startswith("data: {"):
            seen_so_far += json.loads(event[6:])["choices"][0]["delta"]["content"]
            assert "swordfish" not in seen_so_far.lower() and "password" not in seen_so_far.lower()
    assert ": keep-alive" in raw and raw.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("iterator", [False, True])
def test_chunks_accepted_before_a_failure_reach_the_client(start: Any, iterator: bool) -> None:
    """All events arrive in one network read; the hook passes "one " and fails on "two "."""
    hooks: list[CustomLogger] = [Counting(fail_at="TWO " if iterator else "two ")]
    if iterator:
        hooks.insert(0, Upper())  # through the iterator path as well
    resp = stream(start(*hooks, models=["one-read"]), "one-read")
    out = events(resp.text)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert contents(resp.text) == ("ONE " if iterator else "one ")
    assert json.loads(out[-2][6:])["error"]["message"] == "stream hook failed" and out[-1] == "data: [DONE]"


class DeepCopyAndInsert(CustomLogger):
    """LiteLLM's own pattern: copy a chunk to insert another after it."""

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: UserAPIKeyAuth,
                                                      response: AsyncIterator[Any],
                                                      request_data: dict[str, Any]) -> AsyncIterator[Any]:
        import copy
        import pickle

        from asgi_llm import ModelResponseStream, StreamingChoices

        async for chunk in response:
            assert isinstance(chunk, ModelResponseStream) and isinstance(chunk.choices[0], StreamingChoices)
            extra = copy.deepcopy(chunk)
            extra.choices[0].delta.content = "+"
            assert chunk.choices[0].delta.content != "+"  # the copy is independent
            assert pickle.loads(pickle.dumps(chunk)) == chunk and copy.copy(chunk) == chunk
            assert dict(chunk).keys() == chunk.model_dump().keys() and chunk.json() == chunk.model_dump()
            yield chunk
            yield extra


def test_iterator_hooks_may_deepcopy_and_pickle_chunks(start: Any) -> None:
    resp = stream(start(DeepCopyAndInsert()))
    assert resp.status_code == 200 and contents(resp.text) == "Hello+ from+ upstream+"


class KeepsEverything(CustomLogger):
    """A per-chunk hook that keeps every ``response`` it was handed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> None:
        self.seen.append(response)


def run_stream_hooks(hook: CustomLogger, chunks: int, pad: int = 0) -> float:
    """``StreamHooks`` in-process over an answer of ``chunks`` one-word events (``pad`` more characters
    each), one per read; seconds taken."""
    import asyncio

    from asgi_llm.request.context import RequestContext, set_context
    from asgi_llm.request.routes import match_route
    from middlewares import StreamHooks

    reads = [b'data: {"choices":[{"index":0,"delta":{"content":"w%d %s"}}]}\n\n' % (i, b"x" * pad)
             for i in range(chunks)]

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for read in reads:
            await send({"type": "http.response.body", "body": read, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def served(message: Any) -> None:
        pass

    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "state": {}}
    route = match_route(scope)
    assert route is not None
    set_context(scope, RequestContext(route, b"{}", {"model": "m", "stream": True}, True))
    began = time.perf_counter()
    asyncio.run(StreamHooks(upstream, callbacks=[hook])(scope, None, served))
    return time.perf_counter() - began


def test_text_so_far_handed_to_a_hook_is_never_changed_afterwards() -> None:
    """The text grows in place when nobody else holds it; a hook that keeps it keeps what it saw."""
    hook = KeepsEverything()
    run_stream_hooks(hook, 300)
    assert hook.seen == ["".join(f"w{i} " for i in range(n + 1)) for n in range(300)]


def test_text_so_far_costs_the_same_per_chunk_in_a_long_stream() -> None:
    """Ten times the chunks take about ten times as long: the text so far is not copied per chunk.
    (It was: quadratic, 2 MB of text took ~150 times as long as 0.2 MB on the development VM.)"""
    short = min(run_stream_hooks(NoopChunk(), 2_000, pad=100) for _ in range(3))
    long = run_stream_hooks(NoopChunk(), 20_000, pad=100)
    assert long < 40 * short, (short, long)


class NoopChunk(CustomLogger):
    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> None:
        return None
