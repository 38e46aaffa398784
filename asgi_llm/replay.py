"""``Replay``: hand the stack's current request body to a foreign ASGI app.

Put it in front of any app that reads the body from ``receive`` (an existing
OpenAI-compatible ASGI service used in place of ``UpstreamApp``). It encodes the
context's body once if a layer changed it, fixes ``content-length`` in the scope,
yields the body once, then delegates ``receive`` so ``http.disconnect`` arrives.
"""

from __future__ import annotations

from asgi_llm.context import get_context
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send


class Replay:
    """The inner end of a stack that wraps a foreign app instead of ``UpstreamApp``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is None or ctx.body is None:
            await self.app(scope, receive, send)
            return
        body = ctx.body_bytes()
        ctx.consumed = True  # outer replaying receives now only delegate
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def receive_body() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, receive_body, send)
