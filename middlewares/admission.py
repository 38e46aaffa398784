"""``Admission``: a worker past its capacity refuses new calls at once instead of queueing them.

Two signs of overload, each optional: more streams open in this worker than
``general_settings.max_open_streams``, or the event loop running late by more than
``max_event_loop_lag`` seconds (measured every 100 ms, the worst of
the last second counts). Past either, a new LLM call gets 503 ``worker_overloaded`` with
``retry-after: 1`` (a load balancer or the openai SDK goes elsewhere or retries), and
``/health/readiness`` answers 503 ``{"status": "shedding"}``; calls already admitted,
streams included, keep going. Refusals are counted in ``shed_total{reason}``.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.context import get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import send_whole
from asgi_llm.request.routes import local_path
from asgi_llm.types import ASGIApp, Receive, Scope, Send

SAMPLE = 0.1  # seconds between loop-lag samples
WINDOW = 1.0  # a lag spike counts this long


class Admission:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, max_open_streams: int | None = None, max_lag: float | None = 2.0,
                 metrics: GatewayMetrics | None = None) -> None:
        self.app = app
        self.max_open_streams = max_open_streams
        self.max_lag = max_lag
        self.metrics = metrics
        self.open_streams = 0
        self.lag = 0.0  # the worst loop lag of the last WINDOW seconds
        self._lag_until = 0.0
        self._monitor: asyncio.Task[None] | None = None

    def overloaded(self) -> str | None:
        """Why this worker refuses new calls now, or None."""
        if self.max_open_streams is not None and self.open_streams >= self.max_open_streams:
            return "open_streams"
        if self.max_lag is not None and self.lag > self.max_lag and time.monotonic() < self._lag_until:
            return "event_loop_lag"
        return None

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(SAMPLE)
            late = loop.time() - before - SAMPLE
            now = time.monotonic()
            if late > self.lag or now >= self._lag_until:
                self.lag, self._lag_until = late, now + WINDOW

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_lag is not None and (self._monitor is None or self._monitor.done()):
            self._monitor = asyncio.get_running_loop().create_task(self._watch_lag())
        ctx = get_context(scope)
        if ctx is None:
            why = self.overloaded() if local_path(scope) == "/health/readiness" else None
            if why is not None:
                await send_whole(send, 503, msgspec.json.encode({"status": "shedding", "reason": why}),
                                 headers=[(b"retry-after", b"1")])
                return
            await self.app(scope, receive, send)
            return
        why = self.overloaded()
        if why is not None:
            if self.metrics is not None:
                self.metrics.bump(self.metrics.shed, why)
            raise GatewayError(503, f"This worker is at capacity ({why.replace('_', ' ')}); retry shortly or "
                               "elsewhere.", code="worker_overloaded", headers={"retry-after": "1"})
        if not ctx.stream:
            await self.app(scope, receive, send)
            return
        self.open_streams += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open_streams -= 1
