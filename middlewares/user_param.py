"""``EnforceUserParam``: ``general_settings.enforce_user_param`` as in LiteLLM.

Every POST to an LLM route whose JSON body has no ``user`` key gets 400 with
``param: "user"``. The key's presence is what counts: ``"user": null`` passes, as in
LiteLLM. GET routes and multipart uploads pass untouched.
"""

from __future__ import annotations

from asgi_llm.request.context import get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.types import ASGIApp, Receive, Scope, Send


class EnforceUserParam:
    """400 for LLM requests without ``user``; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is not None and ctx.body is not None and "user" not in ctx.body:
            raise GatewayError(
                400, "The 'user' param is required in every request body: general_settings.enforce_user_param "
                "is on. Send the end user's id as `user`.", param="user", code="missing_user_param")
        await self.app(scope, receive, send)
