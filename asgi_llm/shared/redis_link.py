"""``RedisLink``: one worker's connection pool to Redis, and how its faults are contained.

redis-py's ``redis.asyncio`` client (hiredis parses replies) with explicit socket
timeouts, so a stalled Redis costs at most ``socket_timeout``, never a hung request.
A command that fails (refused, timed out, an error reply) marks Redis down for
``retry_interval`` seconds: callers then get ``RedisDown`` at once, without a
network wait, and the first call after the interval tries again, so the gateway
reconnects by itself when Redis is back. Each fault is counted
(``redis_errors_total{op}``) and logged at most once per ``log_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from asgi_llm.config.redis import RedisTarget
from asgi_llm.observe.metrics import GatewayMetrics

log = logging.getLogger("asgi_llm.redis")
T = TypeVar("T")


class RedisDown(Exception):
    """Redis could not answer (now, or within the last ``retry_interval``)."""


class RedisLink:
    """See the module docstring. The client is made in the running loop, on first use."""

    def __init__(self, target: RedisTarget, *, retry_interval: float = 1.0, log_interval: float = 10.0,
                 metrics: GatewayMetrics | None = None) -> None:
        self.target = target
        self.retry_interval = retry_interval
        self.log_interval = log_interval
        self.metrics = metrics
        self.down_until = 0.0
        self.round_trips = 0  # commands sent (a script call is one): `make bench` prints them per request
        self.faults = 0
        self._last_log = -log_interval
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # a pool belongs to one loop
            t = self.target
            options: dict[str, Any] = {
                "socket_timeout": t.socket_timeout, "socket_connect_timeout": t.socket_connect_timeout,
                # one immediate retry: a pooled connection Redis dropped (a restart) fails once, then reconnects
                "retry": Retry(NoBackoff(), 1), "health_check_interval": 0}
            if t.url:
                self._client = aioredis.Redis.from_url(t.url, **options)
            else:
                self._client = aioredis.Redis(host=t.host or "localhost", port=t.port, db=t.db, password=t.password,
                                              **options)
            self._loop, self._scripts = loop, {}
        return self._client

    def script(self, source: str) -> Any:
        """A Lua script registered on the current client (sent by SHA; loaded again if Redis lost it)."""
        client = self.client
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = client.register_script(source)
        return found

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    async def run(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, one round trip, timed; a fault becomes ``RedisDown`` (see the module docstring)."""
        if time.monotonic() < self.down_until:
            raise RedisDown(f"Redis is down (retrying within {self.retry_interval:g} s)")
        start = time.perf_counter()
        self.round_trips += 1
        try:
            result = await call()
        except (RedisError, OSError) as exc:
            self.fault(op, exc)
            raise RedisDown(str(exc) or type(exc).__name__) from None
        if self.metrics is not None:
            self.metrics.roundtrip(op, time.perf_counter() - start)
        return result

    def fault(self, op: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.down_until = now + self.retry_interval
        self.faults += 1
        if self.metrics is not None:
            self.metrics.bump(self.metrics.redis_errors, op)
        if now - self._last_log >= self.log_interval:
            self._last_log = now
            log.warning("Redis %r failed on %s: %s: %s (%d faults so far; limits and cache degrade as configured)",
                        self.target, op, type(exc).__name__, exc, self.faults)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(RedisError, OSError, RuntimeError):  # a pool of a loop already gone
                await client.aclose()
