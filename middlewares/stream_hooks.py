"""``StreamHooks``: LiteLLM's streaming hooks on SSE answers (chat and text completions).

Contract, for streaming requests whose answer is ``text/event-stream``:
- each SSE event is parsed once (``asgi_llm.SSEDecoder``) and shared by every hook;
- each callback's ``async_post_call_streaming_iterator_hook(user_api_key_dict,
  response, request_data)`` wraps the chunk iterator, in config order: it may change,
  drop, insert or hold back chunks (given and taken as response objects or dicts);
- then each ``async_post_call_streaming_hook(user_api_key_dict, response)`` runs per
  chunk with the text so far: ``None`` keeps the chunk, a returned chunk replaces it,
  raising ends the stream;
- ``data: [DONE]`` is sent after the last chunk; comments and keep-alives pass as they come;
- the response start is sent with the first output, so a hook that raises before it
  accepted any chunk gets a real status as JSON (rendered by ``Errors``); once a chunk
  was accepted, the accepted chunks reach the client first (even those of the same
  network read) and the stream ends with an SSE error event and ``[DONE]``. A failing
  hook cancels the upstream call. The
  upstream is read through a bounded queue (backpressure holds).

Output is one write per network read. Per-chunk hooks alone read whole LF events raw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, cast

import msgspec

from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.hooks.custom_logger import CustomLogger, with_hook
from asgi_llm.hooks.response import unwrap, wrap
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.sse.chunks import chunk_text, raw_chunk_text
from asgi_llm.sse.codec import SSEDecoder, is_sse
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send

_encode = msgspec.json.Encoder().encode
_END = object()
DONE = b"data: [DONE]\n\n"


async def _as_objects(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for chunk in chunks:
        yield wrap(unwrap(chunk))


class _Stream:
    """One intercepted answer: the held start, the event queue, what was emitted."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)  # batches: one per network read
        self.decoder = SSEDecoder()
        self.done = False
        self.text = ""  # text: served so far, for per-chunk hooks
        self.out: list[bytes] = []
        self.accepted = False  # a chunk passed the hooks: a later failure ends the stream, not the status

    async def fail(self) -> None:
        """A hook failed: what the hooks accepted goes out before the error does."""
        if self.accepted:
            await self.flush()

    async def flush(self, more: bool = True) -> None:
        if not self.out and more:
            return
        if self.start is not None:
            await self.send(self.start)
            self.start = None
        body, self.out = b"".join(self.out), []
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
        auth = ctx.caller(scope["path"])
        stream = _Stream(send)
        if not self.iterators:  # per-chunk hooks run inline in `send`: no tasks needed
            await self.app(scope, receive, self.intercept(stream, None, ctx, auth))
            return
        try:
            async with asyncio.TaskGroup() as group:
                sending = self.intercept(stream, group, ctx, auth)
                group.create_task(cast(Coroutine[Any, Any, None], self.app(scope, receive, sending)))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # what Errors renders: the hook's or upstream's own error

    def intercept(self, stream: _Stream, group: asyncio.TaskGroup | None, ctx: RequestContext,
                  auth: UserAPIKeyAuth) -> Send:
        passthrough = False

        async def hooked_send(message: Message) -> None:
            nonlocal passthrough
            if message["type"] == "http.response.start":
                if message["status"] != 200 or not is_sse(message):
                    passthrough = True
                    await stream.send(message)
                    return
                stream.start = message
                if group is not None:
                    group.create_task(self.consume(stream, ctx, auth))
                return
            if passthrough:
                await stream.send(message)
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not self.iterators:  # per-chunk hooks only: no task, no queue, one write per read
                await self.inline(stream, stream.decoder.feed_pairs(body, last=not more), auth, more)
                return
            batch = stream.decoder.feed(body)
            if not more:
                batch += stream.decoder.flush()
            if batch:
                await stream.queue.put(batch)
            if not more:
                await stream.queue.put(_END)

        return hooked_send

    async def inline(self, stream: _Stream, pairs: list[tuple[bytes, bytes]], auth: UserAPIKeyAuth,
                     more: bool) -> None:
        """Per-chunk hooks over ``(raw, payload)`` events; unchanged events go out as their bytes."""
        for raw, payload in pairs:
            if payload == b"[DONE]":
                stream.done = True
                continue
            if payload[:1] not in (b"{", b"["):  # comments, keep-alives, anything not JSON
                stream.out.append(raw)
                continue
            try:
                replaced = await self.per_chunk_hooks(stream, raw_chunk_text(payload), auth)
            except Exception:
                await stream.fail()
                raise
            stream.out.append(raw if replaced is None else b"data: " + _encode(replaced) + b"\n\n")
            stream.accepted = True
        if not more and stream.done:
            stream.out.append(DONE)
        await stream.flush(more)

    async def per_chunk_hooks(self, stream: _Stream, text: str, auth: UserAPIKeyAuth) -> Any:
        """Run the per-chunk hooks; the replacement chunk, or None when every hook kept it."""
        # The text so far grows in place: CPython extends a str held by one local name only, so the
        # attribute lets go of it while it grows. (``stream.text += text`` copied the whole text per
        # chunk: quadratic in a long stream, 17 us a chunk averaged over 32,000 chunks.)
        so_far, stream.text = stream.text, ""
        so_far += text
        stream.text = so_far
        replaced = None
        for callback in self.per_chunk:
            result = await callback.async_post_call_streaming_hook(user_api_key_dict=auth, response=stream.text)
            if result is not None:
                replaced = unwrap(result)
        return replaced

    async def source(self, stream: _Stream) -> AsyncIterator[Any]:
        while True:
            if stream.queue.empty():
                await stream.flush()  # about to wait for the upstream: send what is ready
            batch = await stream.queue.get()
            if batch is _END:
                return
            for event in batch:
                if event.is_done:
                    stream.done = True  # sent after the hooks have drained
                elif event.json is None:
                    stream.out.append(event.raw)  # comments, keep-alives, anything not JSON
                else:
                    yield wrap(event.json)

    async def consume(self, stream: _Stream, ctx: RequestContext, auth: UserAPIKeyAuth) -> None:
        chunks: AsyncIterator[Any] = self.source(stream)
        for callback in self.iterators:  # each hook gets response objects, whatever the last one yielded
            chunks = callback.async_post_call_streaming_iterator_hook(user_api_key_dict=auth, response=chunks,
                                                                      request_data=ctx.body or {})
            if callback is not self.iterators[-1]:
                chunks = _as_objects(chunks)
        try:
            async for chunk in chunks:
                data = unwrap(chunk)
                replaced = await self.per_chunk_hooks(stream, chunk_text(data), auth)
                stream.out.append(b"data: " + _encode(data if replaced is None else replaced) + b"\n\n")
                stream.accepted = True
        except Exception:
            await stream.fail()
            raise
        if stream.done:
            stream.out.append(DONE)
        await stream.flush(more=False)
