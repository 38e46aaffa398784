"""``PoolGate``: the upstream pool's cap, made visible: a call waits at most ``pool_timeout``.

With ``general_settings.upstream.max_connections: 0`` (the default) there is no gate:
the pool grows as calls need it, bounded by the worker's open-files limit (which
``asgi-llm`` raises to the hard limit at start-up). With a cap, a call past it waits
for a slot, in order, at most ``pool_timeout`` seconds, then gets 503
``upstream_pool_exhausted`` naming the setting; every wait is counted
(``upstream_pool_waits_total``), the timeouts too (``upstream_pool_timeouts_total``), and
the calls waiting now are a gauge (``upstream_pool_waiting``). A slot is held for the
whole upstream call, a stream's included (it holds its connection that long).
"""

from __future__ import annotations

import asyncio

from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.errors import GatewayError


class PoolGate:
    """See the module docstring."""

    def __init__(self, cap: int, timeout: float, metrics: GatewayMetrics | None = None) -> None:
        self.cap = cap
        self.timeout = timeout
        self.metrics = metrics
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def acquire(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cap)  # made in the serving loop
        slots = self._slots
        if not slots.locked():
            await slots.acquire()  # a free slot: no wait
            return
        metrics = self.metrics
        self.waiting += 1
        if metrics is not None:
            metrics.bump(metrics.pool_waits)
            metrics.pool_waiting.inc()
        try:
            async with asyncio.timeout(self.timeout):
                await slots.acquire()
        except TimeoutError:
            if metrics is not None:
                metrics.bump(metrics.pool_timeouts)
            raise GatewayError(503, f"Every upstream connection is busy (general_settings.upstream."
                               f"max_connections: {self.cap}) and none came free within pool_timeout "
                               f"({self.timeout:g} s).", code="upstream_pool_exhausted",
                               headers={"retry-after": "1"}) from None
        finally:
            self.waiting -= 1
            if metrics is not None:
                metrics.pool_waiting.dec()

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()
