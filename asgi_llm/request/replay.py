"""``Replay``: hand the stack's current request body to a foreign ASGI app.

Put it in front of any app that reads the body from ``receive`` (an existing
OpenAI-compatible ASGI service used in place of ``UpstreamApp``). The body leaves
the stack here as it would toward an upstream: gateway-only and steering fields
(``metadata``, ``api_base``, ``prompt_id``..., ``forward.STRIPPED_FIELDS``) are
removed, and with a ``router`` a model it does not know gets the same 404 as from
``UpstreamApp``. It encodes the body once if anything changed, fixes
``content-length`` in the scope, yields the body once, then delegates ``receive``
so ``http.disconnect`` arrives.
"""

from __future__ import annotations

import msgspec

from asgi_llm.request.context import get_context
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send
from asgi_llm.upstream.forward import STRIPPED_FIELDS, without_gateway_fields
from asgi_llm.upstream.router import Router

_encode = msgspec.json.Encoder().encode


class Replay:
    """The inner end of a stack that wraps a foreign app instead of ``UpstreamApp``."""

    def __init__(self, app: ASGIApp, *, router: Router | None = None) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is None or ctx.body is None:
            await self.app(scope, receive, send)
            return
        if self.router is not None:
            self.router.check(ctx.model)
        # the context keeps the gateway-only fields (hooks and logging read them); the wire does not
        body = ctx.body_bytes() if STRIPPED_FIELDS.isdisjoint(ctx.body) else _encode(without_gateway_fields(ctx.body))
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
