"""The stack mounted inside another Starlette app, and wrapped around a foreign
OpenAI-compatible ASGI app in place of the forwarding app; multipart uploads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Mount, Route

from asgi_llm import Errors, Ingest, Replay, get_context, parse_config
from asgi_llm.gateway import Gateway
from tests.conftest import make_config
from tests.servers import Recorder, ServerThread

Sdk = Callable[..., Any]


def test_mounted_under_a_prefix(sdk: Sdk, upstream: tuple[Recorder, str]) -> None:
    recorder, url = upstream
    llm = Gateway(parse_config(make_config(url)))

    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"service": "host app"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await llm.aclose()  # Mount does not pass lifespan on: the host closes the pool

    host = Starlette(routes=[Route("/", home), Mount("/llm", app=llm)], lifespan=lifespan)
    with ServerThread(host) as server:
        client = sdk(server.url, path="/llm/v1")
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "mounted"}])
        assert reply.choices[0].message.content == "echo: mounted"
        stream = client.chat.completions.create(model="mock-model", stream=True,
                                                messages=[{"role": "user", "content": "m"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith("You said: m")
        assert "echo" in {m.id for m in client.models.list()}
        assert httpx.get(server.url + "/").json() == {"service": "host app"}
    assert recorder.requests[-1]["path"] == "/v1/chat/completions"


def test_wraps_a_foreign_app_with_correct_body_and_length(sdk: Sdk) -> None:
    seen: list[dict[str, Any]] = []

    async def chat(request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw)
        seen.append({"length": request.headers["content-length"], "size": len(raw), "body": body})
        if body.get("stream"):
            async def events() -> AsyncIterator[bytes]:
                for word in ("foreign ", "stream"):
                    delta = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                             "id": "f", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
                    yield b"data: " + json.dumps(delta).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"id": "f", "object": "chat.completion", "created": 1, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "foreign answer"}}]})

    foreign = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    class Rewrite:  # a layer that changes the body, so the replay must re-encode and fix the length
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            ctx = get_context(scope)
            if ctx is not None and ctx.body is not None:
                ctx.body["messages"].insert(0, {"role": "system", "content": "be brief, please"})
                ctx.mark_changed()
            await self.app(scope, receive, send)

    config = parse_config({"model_list": [{"model_name": "f", "litellm_params": {"model": "mock/f"}}]})
    assert Gateway(config, app=foreign).layers == ["Errors", "Ingest", "Replay"]
    stack = Errors(Ingest(Rewrite(Replay(foreign))))  # a user's own layer between ours
    with ServerThread(stack) as server:
        client = sdk(server.url)
        reply = client.chat.completions.create(model="f", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "foreign answer"
        stream = client.chat.completions.create(model="f", messages=[{"role": "user", "content": "hi"}],
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "foreign stream"
    assert len(seen) == 2
    for got in seen:
        assert int(got["length"]) == got["size"]
        assert got["body"]["messages"][0] == {"role": "system", "content": "be brief, please"}
    assert seen[1]["body"]["stream"] is True


def test_multipart_upload_is_forwarded_intact(sdk: Sdk, gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    audio = bytes(range(256)) * 4096  # 1 MiB of binary "audio"
    client = sdk(gateway)
    result = client.audio.transcriptions.create(model="whisper", file=("a.wav", audio, "audio/wav"))
    sent = recorder.requests[-1]
    assert sent["path"] == "/v1/audio/transcriptions"
    assert sent["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert audio in sent["raw"] and b'name="model"\r\n\r\nwhisper' in sent["raw"]
    assert result.text == f"{len(sent['raw'])} bytes"
    assert "sk-client-key" not in json.dumps(sent["headers"])


def test_multipart_without_model_is_400(gateway: str) -> None:
    resp = httpx.post(gateway + "/v1/audio/transcriptions", files={"file": ("a.wav", b"123")}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
