"""``RedisLink``: one worker's connection pool to Redis, and how its faults are contained.

redis-py's ``redis.asyncio`` client (hiredis parses replies) with explicit socket
timeouts, so a stalled Redis costs at most ``socket_timeout``, never a hung request.
A command that fails (refused, timed out, an error reply) marks Redis down for
``retry_interval`` seconds: callers then get ``RedisDown`` at once, without a
network wait, and the first call after the interval tries again, so the gateway
reconnects by itself when Redis is back. Each fault is counted
(``redis_errors_total{op}``) and logged at most once per ``log_interval``.

Script calls are pipelined across requests (``call``): every call made in one turn of
the event loop goes out in one redis-py pipeline, one round trip for all of them. A
redis-py command costs ~100 µs of CPU here, one of a pipeline of 16 ~25 µs (``make
bench``), so a busy worker pays a fraction of a round trip per request; a lone call
goes as a plain ``EVALSHA``. A call never waits for another turn: the batch leaves at
the end of the turn it was made in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

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
        self._sending: set[asyncio.Task[None]] = set()
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[tuple[str, str, list[Any], list[Any], asyncio.Future[Any]]] = []  # (op, script, ...)

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
            self._loop = loop
        return self._client

    def call(self, op: str, source: str, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """Run the Lua ``source`` with ``keys`` and ``args``, in this turn's pipeline; the future holds the
        reply or ``RedisDown``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.up:
            future.set_exception(self._down())
            return future
        if not self._batch:
            future.get_loop().call_soon(self._flush)
        self._batch.append((op, source, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, str, list[Any], list[Any], asyncio.Future[Any]]]) -> None:
        client = self.client
        start = time.perf_counter()
        self.round_trips += 1
        try:
            if len(batch) == 1:  # a lone call: a pipeline would cost more than the command
                _, source, keys, args, _ = batch[0]
                replies: list[Any] = [await self._evalsha(client, source, keys, args)]
            else:
                pipe = client.pipeline(transaction=False)
                for _, source, keys, args, _ in batch:
                    pipe.execute_command(*_evalsha_command(source, keys, args))
                replies = await pipe.execute(raise_on_error=False)
                for i, reply in enumerate(replies):
                    if isinstance(reply, NoScriptError):  # Redis restarted or flushed its scripts: load, send again
                        _, source, keys, args, _ = batch[i]
                        replies[i] = await self._evalsha(client, source, keys, args)
        except (RedisError, OSError) as exc:
            self.fault(batch[0][0], exc)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(RedisDown(str(exc) or type(exc).__name__))
            return
        if self.metrics is not None:
            self.metrics.roundtrip(batch[0][0], time.perf_counter() - start)
        for (op, *_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(reply, Exception):  # an error reply to this call alone
                self.fault(op, reply)
                future.set_exception(RedisDown(str(reply)))
            else:
                future.set_result(reply)

    async def _evalsha(self, client: aioredis.Redis, source: str, keys: list[Any], args: list[Any]) -> Any:
        command = client.execute_command
        try:
            return await command(*_evalsha_command(source, keys, args))  # type: ignore[no-untyped-call]
        except NoScriptError:
            await client.script_load(source)
            return await command(*_evalsha_command(source, keys, args))  # type: ignore[no-untyped-call]

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    def _down(self) -> RedisDown:
        """What a call gets while Redis is marked down: no network wait."""
        return RedisDown(f"Redis is down (retrying within {self.retry_interval:g} s)")

    async def run(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, one round trip, timed; a fault becomes ``RedisDown`` (see the module docstring)."""
        if not self.up:
            raise self._down()
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


_SHAS: dict[str, bytes] = {}


def _evalsha_command(source: str, keys: list[Any], args: list[Any]) -> tuple[Any, ...]:
    """The ``EVALSHA`` command running ``source`` with ``keys`` and ``args``."""
    return ("EVALSHA", _sha(source), b"%d" % len(keys), *keys, *args)


def _sha(source: str) -> bytes:
    """The SHA1 Redis knows a script by."""
    found = _SHAS.get(source)
    if found is None:
        found = _SHAS[source] = hashlib.sha1(source.encode()).hexdigest().encode()
    return found
