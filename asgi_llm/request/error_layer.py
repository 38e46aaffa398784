"""``Errors``: the outermost layer, the only one that turns exceptions into answers.

It watches what has been sent. An exception before ``http.response.start`` becomes
an OpenAI-shaped JSON error with its status; after an SSE response started, any
partial event is closed and the stream ends with ``data: {"error": ...}`` and
``data: [DONE]``. A non-SSE response that already started cannot be repaired: it is
logged and the connection is left for the server to close. Nothing reaches the
client as a traceback.

Before rendering, every callback's ``async_post_call_failure_hook`` runs in config
order; the first ``HTTPException`` one returns or raises replaces the client's
error. Other exceptions from a failure hook are logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.exceptions import HTTPException

from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.hooks.custom_logger import with_hook
from asgi_llm.request.context import get_context, scope_state
from asgi_llm.request.errors import ERROR_KEY, GatewayError, send_json_error, to_gateway_error
from asgi_llm.sse.codec import is_sse
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("asgi_llm.errors")


class _Progress:
    """What the client has been sent so far."""

    __slots__ = ("ended", "open_event", "sse", "started")

    def __init__(self) -> None:
        self.started = False
        self.sse = False
        self.open_event = False  # the last body bytes did not end an SSE event
        self.ended = False


class Errors:
    """Render every error raised below it; see the module docstring for the two regimes."""

    def __init__(self, app: ASGIApp, *, callbacks: Sequence[Any] = ()) -> None:
        self.app = app
        self.failure_hooks = with_hook(list(callbacks), "async_post_call_failure_hook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        progress = _Progress()

        def tracking_send(message: Message) -> Awaitable[None]:  # no coroutine of its own per message
            if message["type"] == "http.response.start":
                progress.started = True
                progress.sse = is_sse(message)
            elif progress.sse:
                body = message.get("body", b"")
                if body:
                    progress.open_event = not (body.endswith(b"\n\n") or body.endswith(b"\r\n\r\n"))
                progress.ended = not message.get("more_body", False)
            return send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the error boundary: everything below ends here
            scope_state(scope)[ERROR_KEY] = exc  # for observers outside (the logging layer)
            replaced = await self.run_failure_hooks(scope, exc) if self.failure_hooks else None
            await self.render(replaced or exc, progress, send)

    async def run_failure_hooks(self, scope: Scope, exc: Exception) -> HTTPException | None:
        ctx = get_context(scope)
        data = ctx.body if ctx is not None and ctx.body is not None else {}
        auth = ctx.caller(scope["path"]) if ctx is not None else UserAPIKeyAuth(request_route=scope["path"])
        for callback in self.failure_hooks:
            try:
                result = await callback.async_post_call_failure_hook(
                    request_data=data, original_exception=exc, user_api_key_dict=auth)
            except HTTPException as raised:
                return raised
            except Exception:
                log.exception("async_post_call_failure_hook of %s failed; ignored", type(callback).__name__)
                continue
            if isinstance(result, HTTPException):
                return result
        return None

    async def render(self, exc: Exception, progress: _Progress, send: Send) -> None:
        err = to_gateway_error(exc)
        if err.status >= 500 and not isinstance(exc, GatewayError):
            log.error("unhandled error in the stack", exc_info=exc)
        else:
            log.info("request failed: %s %s", err.status, err.message)
        if not progress.started:
            await send_json_error(send, err)
        elif progress.sse and not progress.ended:
            closing = b"\n\n" if progress.open_event else b""
            await send({"type": "http.response.body", "body": closing + err.sse(), "more_body": False})
        else:
            log.warning("error after a non-streaming response started; closing: %s", err.message)
