"""``MetricsEndpoint``: ``GET /metrics`` in Prometheus text format.

Contract: answers ``GET``/``HEAD`` on ``/metrics`` (also under ``/v1`` and the
mount's root path) with ``GatewayMetrics.render()``; every other request passes
through untouched. When a master key is set, the scraper must send it
(``Authorization: Bearer <master key>``): a missing key gets 401, a wrong one 401,
compared in constant time over digests. Virtual keys do not open it: metrics show
every caller's traffic. Errors are OpenAI-shaped JSON, like every other answer.
"""

from __future__ import annotations

import hmac

from asgi_llm.hooks.auth import key_digest
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.errors import GatewayError, send_json_error
from asgi_llm.request.http import send_whole
from asgi_llm.request.routes import local_path
from asgi_llm.types import ASGIApp, Receive, Scope, Send
from middlewares.auth import presented_key


class MetricsEndpoint:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics, master_key: str | None = None,
                 path: str = "/metrics") -> None:
        self.app = app
        self.metrics = metrics
        self.path = path
        self._master = key_digest(master_key) if master_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(self.path) or local_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        await self._serve(scope, send)

    async def _serve(self, scope: Scope, send: Send) -> None:
        refused = self.refusal(scope)
        if refused is not None:
            await send_json_error(send, refused)
            return
        body, content_type = self.metrics.render()
        await send_whole(send, 200, b"" if scope["method"] == "HEAD" else body, content_type.encode())

    def refusal(self, scope: Scope) -> GatewayError | None:
        if scope["method"] not in ("GET", "HEAD"):
            return GatewayError(405, f"{self.path} takes GET.", code="method_not_allowed")
        if self._master is None:
            return None
        try:
            key = presented_key(scope)
        except GatewayError as refused:  # this layer sits outside Errors: it answers its own refusals
            return refused
        if key is None:
            return GatewayError(401, "Missing API key: /metrics needs the master key.", code="missing_api_key")
        if not hmac.compare_digest(key_digest(key), self._master):
            return GatewayError(401, "Invalid API key: /metrics needs the master key.", code="invalid_api_key")
        return None
