"""``Moderation``: ``async_moderation_hook`` in parallel with the model call.

Contract, for every LLM request with a JSON body:
- each callback's ``async_moderation_hook(data, user_api_key_dict, call_type)`` runs
  concurrently with the inner app (the upstream call), so the latency is the longer
  of the two, not their sum;
- the client gets nothing of the answer until every hook has passed: what the inner
  app sends meanwhile is held, up to ``buffer_bytes``; past that its ``send`` waits,
  which pauses reading from the upstream instead of growing memory;
- a hook that raises fails the call: the inner app is cancelled at once (the upstream
  request is closed, no more tokens are generated), and the error is rendered as
  JSON with its status (an ``HTTPException`` keeps its own; others give 500), since
  nothing was sent yet;
- ``timeout`` seconds without a verdict: ``fail_closed`` fails the call with 503
  naming the timeout; ``fail_open`` lets it proceed and logs a warning;
- hooks get a deep copy of the body: their return value is ignored and changing
  ``data`` does not change what is sent upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Literal

import msgspec

from asgi_llm.hooks.custom_logger import CustomLogger, with_hook
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("asgi_llm.moderation")
_copy = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
Policy = Literal["fail_closed", "fail_open"]


class _Gate:
    """Holds the inner app's messages until opened; makes it wait when the buffer is full."""

    def __init__(self, send: Send, limit: int) -> None:
        self.send = send
        self.limit = limit
        self.held: list[Message] = []
        self.size = 0
        self.open = False
        self.opened = asyncio.Event()

    async def gated_send(self, message: Message) -> None:
        if self.open:
            await self.send(message)
            return
        self.held.append(message)
        self.size += len(message.get("body", b""))
        if self.size >= self.limit:
            await self.opened.wait()  # backpressure: the upstream read pauses here

    async def release(self) -> None:
        i = 0
        while i < len(self.held):  # the inner app may add more while we send
            await self.send(self.held[i])
            i += 1
        self.open, self.held = True, []
        self.opened.set()


class Moderation:
    """Run moderation hooks beside the model call; see the module docstring."""

    def __init__(self, app: ASGIApp, *, callbacks: Sequence[CustomLogger], timeout: float | None = None,
                 policy: Policy = "fail_closed", buffer_bytes: int = 1 << 20) -> None:
        self.app = app
        self.hooks = with_hook(list(callbacks), "async_moderation_hook")
        self.timeout = timeout
        self.policy = policy
        self.buffer_bytes = buffer_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if not self.hooks or ctx is None or ctx.body is None:
            await self.app(scope, receive, send)
            return
        gate = _Gate(send, self.buffer_bytes)
        inner = asyncio.ensure_future(self.app(scope, receive, gate.gated_send))
        try:
            await self.verdict(ctx, scope)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                ctx.notes["moderation_rejected"] = True  # for metrics
            inner.cancel()  # the upstream request is closed now, not when it would have finished
            with contextlib.suppress(BaseException):
                await inner
            raise
        await gate.release()
        await inner

    async def verdict(self, ctx: RequestContext, scope: Scope) -> None:
        assert ctx.body is not None
        auth = ctx.caller(scope["path"])
        data = _copy(_encode(ctx.body))  # a private copy: hooks cannot change what goes upstream
        calls = [cb.async_moderation_hook(data=data, user_api_key_dict=auth, call_type=ctx.call_type)
                 for cb in self.hooks]
        checks = calls[0] if len(calls) == 1 else asyncio.gather(*calls)  # one hook: no extra task
        limit = asyncio.timeout(self.timeout)
        try:
            async with limit:
                await checks
        except BaseException:
            if isinstance(checks, asyncio.Future):
                checks.cancel()  # the other hooks' work is moot once one failed
            if limit.expired():  # our timeout, not a TimeoutError raised by a hook
                self.timed_out()
                return
            raise

    def timed_out(self) -> None:
        if self.policy == "fail_open":
            log.warning("moderation gave no verdict within %ss; proceeding (fail_open)", self.timeout)
            return
        raise GatewayError(503, f"Moderation gave no verdict within {self.timeout:g}s "
                           "(general_settings.moderation_timeout).", code="moderation_timeout")
