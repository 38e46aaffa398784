"""``acompletion`` / ``aembedding``: calls to a configured model group from inside a hook.

LiteLLM hooks that consult a model (an LLM-judge guardrail) call
``litellm.acompletion(...)``; here they call ``asgi_llm.acompletion(...)`` with the
same arguments. The call goes straight to the gateway's terminal app: the model
group's deployments, retries and shared upstream pool, or the mock. No hook runs
again (no recursion through a guardrail that itself calls a model), no client key
is involved, and ``model`` must be a configured model name (404 otherwise, as for a
client). Answers are the LiteLLM-named views (``ModelResponse``,
``EmbeddingResponse``...); with ``stream=True`` an async iterator of
``ModelResponseStream`` chunks. An error answer raises ``GatewayError``, whose
``status_code`` is the status a client would have got.

The terminal app used is the last ``UpstreamApp`` built in the process (each
registers itself), or the one given to ``LLMClient``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from asgi_llm.hooks.response import wrap
from asgi_llm.hooks.response_types import ModelResponseStream
from asgi_llm.request.errors import GatewayError
from asgi_llm.sse.codec import SSEDecoder
from asgi_llm.types import Message

if TYPE_CHECKING:
    from asgi_llm.upstream.app import UpstreamApp

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_END = object()


class LLMClient:
    """Model calls through one ``UpstreamApp``; see the module docstring."""

    def __init__(self, upstream: UpstreamApp) -> None:
        self.upstream = upstream

    async def acompletion(self, model: str, messages: list[Any], *, stream: bool = False, **params: Any) -> Any:
        body = {**params, "model": model, "messages": messages, "stream": stream}
        if stream:
            return self._stream("/v1/chat/completions", body)
        return await self._call("/v1/chat/completions", body)

    async def atext_completion(self, model: str, prompt: Any, **params: Any) -> Any:
        return await self._call("/v1/completions", {**params, "model": model, "prompt": prompt, "stream": False})

    async def aembedding(self, model: str, input: Any, **params: Any) -> Any:  # noqa: A002 - LiteLLM's name
        return await self._call("/v1/embeddings", {**params, "model": model, "input": input})

    def _run(self, path: str, body: dict[str, Any], send: Any) -> asyncio.Task[None]:
        scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                                 "query_string": b"", "headers": [(b"content-type", b"application/json")],
                                 "client": None, "server": None, "state": {}}
        pending = [{"type": "http.request", "body": _encode(body), "more_body": False}]

        async def receive() -> Message:
            if pending:
                return pending.pop()
            await asyncio.Event().wait()  # nobody leaves: the call ends when its answer is in
            raise AssertionError("unreachable")

        return asyncio.ensure_future(self.upstream(scope, receive, send))

    async def _call(self, path: str, body: dict[str, Any]) -> Any:
        status, parts = 0, []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                parts.append(message.get("body", b""))

        await self._run(path, body, send)
        return _answer(status, b"".join(parts))

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()  # a hook's own call: as long as one answer
        status = 0

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                await queue.put(message.get("body", b""))
                if not message.get("more_body", False):
                    await queue.put(_END)

        task = self._run(path, body, send)
        task.add_done_callback(lambda t: queue.put_nowait(_END) if t.cancelled() or t.exception() else None)
        decoder, error = SSEDecoder(), []
        try:
            while (chunk := await queue.get()) is not _END:
                if status >= 400:
                    error.append(chunk)
                    continue
                for event in decoder.feed(chunk):
                    if isinstance(event.json, dict):  # chunks; not [DONE] or comments
                        yield ModelResponseStream(event.json)
            await task  # raises what the call raised (an unknown model, an upstream error)
            if status >= 400:
                _answer(status, b"".join(error))
        finally:
            task.cancel()


def _answer(status: int, data: bytes) -> Any:
    """The answer as a view, or the ``GatewayError`` a client would have got."""
    try:
        payload = _decode(data)
    except msgspec.DecodeError:
        payload = None
    if status >= 400:
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise GatewayError(status, message if isinstance(message, str) else data[:200].decode("utf-8", "replace"))
    return wrap(payload)


_default: LLMClient | None = None


def use_upstream(upstream: UpstreamApp) -> None:
    """Make ``upstream`` the terminal app of the module-level ``acompletion``/``aembedding``."""
    global _default
    _default = LLMClient(upstream)


def _client() -> LLMClient:
    if _default is None:
        raise RuntimeError("asgi_llm.acompletion needs a gateway: build one (create_app, Gateway or UpstreamApp) "
                           "before calling it")
    return _default


async def acompletion(model: str, messages: list[Any], *, stream: bool = False, **params: Any) -> Any:
    """LiteLLM's ``acompletion``, through this process's gateway; see the module docstring."""
    return await _client().acompletion(model, messages, stream=stream, **params)


async def atext_completion(model: str, prompt: Any, **params: Any) -> Any:
    """LiteLLM's ``atext_completion``, through this process's gateway."""
    return await _client().atext_completion(model, prompt, **params)


async def aembedding(model: str, input: Any, **params: Any) -> Any:  # noqa: A002 - LiteLLM's name
    """LiteLLM's ``aembedding``, through this process's gateway."""
    return await _client().aembedding(model, input, **params)
