"""``StreamHooks``: LiteLLM's streaming hooks on SSE answers (chat and text completions).

Contract, for streaming requests whose answer is ``text/event-stream``:
- each SSE event is parsed once (``asgi_llm.SSEDecoder``) and shared by every hook;
- each callback's ``async_post_call_streaming_iterator_hook(user_api_key_dict,
  response, request_data)`` wraps the chunk iterator, in config order: it may change,
  drop, insert or hold back chunks (given and taken as response objects or dicts);
- then each ``async_post_call_streaming_hook(user_api_key_dict, response)`` runs per
  chunk with the text so far: ``None`` keeps the chunk, a returned chunk replaces it,
  raising ends the stream;
- ``data: [DONE]`` is sent after the last chunk; comments and keep-alives pass as
  they come;
- the response start is sent with the first output, so a hook that raises before
  anything went out gets a real status as JSON (rendered by ``Errors``); after that
  the stream ends with an SSE error event and ``[DONE]``. A failing hook cancels the
  upstream call. The upstream is read through a bounded queue (backpressure holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from asgi_llm import (
    ASGIApp,
    CustomLogger,
    Message,
    Receive,
    RequestContext,
    Scope,
    Send,
    SSEDecoder,
    SSEEvent,
    UserAPIKeyAuth,
    get_context,
    unwrap,
    with_hook,
    wrap,
)

_encode = msgspec.json.Encoder().encode
_END = object()
DONE = b"data: [DONE]\n\n"


def chunk_text(chunk: Any) -> str:
    """The text a chat or text-completion chunk adds."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return ""
    first = choices[0]
    delta = first.get("delta")
    value = delta.get("content") if isinstance(delta, dict) else first.get("text")
    return value if isinstance(value, str) else ""


async def _as_objects(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for chunk in chunks:
        yield wrap(unwrap(chunk))


class _Stream:
    """One intercepted answer: the held start, the event queue, what was emitted."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self.decoder = SSEDecoder()
        self.done = False

    async def emit(self, body: bytes, more: bool = True) -> None:
        if self.start is not None:
            start, self.start = self.start, None
            await self.send(start)
        await self.send({"type": "http.response.body", "body": body, "more_body": more})


class StreamHooks:
    """Streaming hooks; see the module docstring."""

    def __init__(self, app: ASGIApp, *, callbacks: Sequence[CustomLogger]) -> None:
        self.app = app
        self.iterators = with_hook(list(callbacks), "async_post_call_streaming_iterator_hook")
        self.per_chunk = with_hook(list(callbacks), "async_post_call_streaming_hook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is None or not ctx.stream or ctx.call_type not in ("completion", "text_completion"):
            await self.app(scope, receive, send)
            return
        auth = ctx.auth if ctx.auth is not None else UserAPIKeyAuth(request_route=scope["path"])
        stream = _Stream(send)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.produce(scope, receive, self.intercept(stream, group, ctx, auth)))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # what Errors renders: the hook's or upstream's own error

    async def produce(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def intercept(self, stream: _Stream, group: asyncio.TaskGroup, ctx: RequestContext,
                  auth: UserAPIKeyAuth) -> Send:
        passthrough = False

        async def hooked_send(message: Message) -> None:
            nonlocal passthrough
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if message["status"] != 200 or not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    passthrough = True
                    await stream.send(message)
                    return
                stream.start = message
                group.create_task(self.consume(stream, ctx, auth))
                return
            if passthrough:
                await stream.send(message)
                return
            for event in stream.decoder.feed(message.get("body", b"")):
                await stream.queue.put(event)
            if not message.get("more_body", False):
                for event in stream.decoder.flush():
                    await stream.queue.put(event)
                await stream.queue.put(_END)

        return hooked_send

    async def source(self, stream: _Stream) -> AsyncIterator[Any]:
        while True:
            event = await stream.queue.get()
            if event is _END:
                return
            assert isinstance(event, SSEEvent)
            if event.is_done:
                stream.done = True  # sent after the hooks have drained
            elif event.json is None:
                await stream.emit(event.raw)  # comments, keep-alives, anything not JSON
            else:
                yield wrap(event.json)

    async def consume(self, stream: _Stream, ctx: RequestContext, auth: UserAPIKeyAuth) -> None:
        chunks: AsyncIterator[Any] = self.source(stream)
        for callback in self.iterators:  # each hook gets response objects, whatever the last one yielded
            chunks = callback.async_post_call_streaming_iterator_hook(user_api_key_dict=auth, response=chunks,
                                                                      request_data=ctx.body or {})
            if callback is not self.iterators[-1]:
                chunks = _as_objects(chunks)
        text: list[str] = []
        async for chunk in chunks:
            data = unwrap(chunk)
            text.append(chunk_text(data))
            for callback in self.per_chunk:
                replaced = await callback.async_post_call_streaming_hook(user_api_key_dict=auth,
                                                                         response="".join(text))
                if replaced is not None:
                    data = unwrap(replaced)
            await stream.emit(b"data: " + _encode(data) + b"\n\n")
        await stream.emit(DONE if stream.done else b"", more=False)
