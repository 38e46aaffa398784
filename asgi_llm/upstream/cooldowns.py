"""``Cooldowns``: deployments that failed too often are skipped for a while (LiteLLM's router).

A deployment that fails more than ``allowed_fails`` times within a minute (connection
errors, timeouts, 429, 5xx), or once with 401/403/404 (its credentials or model are
wrong), cools down: the router skips it for ``cooldown_time`` seconds. A group of one
deployment never cools down (as in LiteLLM): skipping it would only turn its errors
into 503s.

With Redis, failures are counted and cooldowns set there (``lua.FAIL``, only on a
failure), and every worker reads all cooldowns in one script call about once a
second (``lua.COOLDOWNS``), so no request waits on Redis to learn which deployments
to skip, and a cooldown set by one worker or instance holds for all within a second.
Without Redis, or while it is down, each worker keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from asgi_llm.shared import lua
from asgi_llm.shared.redis_link import RedisDown, RedisLink

PREFIX = "asgi-llm:cooldown"


class Cooldowns:
    """See the module docstring. Deployments are known by their ``counter_id``."""

    def __init__(self, allowed_fails: int = 3, cooldown_time: float = 5.0, *, enabled: bool = True,
                 link: RedisLink | None = None, poll_interval: float = 1.0) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_time = cooldown_time
        self.enabled = enabled and cooldown_time > 0
        self.link = link
        self.poll_interval = poll_interval
        self.until: dict[str, float] = {}  # counter_id -> monotonic end of its cooldown
        self._fails: dict[str, tuple[int, int]] = {}  # counter_id -> (minute, failures)
        self._watched: list[str] = []
        self._poller: asyncio.Task[None] | None = None

    def watch(self, ids: Iterable[str]) -> None:
        """The deployments whose shared cooldowns this worker reads (those of groups of two or more)."""
        self._watched = sorted(set(ids))

    def cooling(self, counter_id: str) -> float:
        """Seconds of cooldown left (0: usable)."""
        until = self.until.get(counter_id)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self.until[counter_id]
            return 0.0
        return left

    async def failed(self, counter_id: str, at_once: bool) -> None:
        """Count a failure of a deployment (``at_once``: 401/403/404, it cools down now)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.link is not None:
            keys = [f"{PREFIX}:fails:{counter_id}", f"{PREFIX}:{counter_id}"]
            args = [self.allowed_fails, int(self.cooldown_time * 1000), "1" if at_once else "0"]
            with contextlib.suppress(RedisDown):  # counted and logged by the link; counted here instead
                left = await self.link.call("cooldown", lua.FAIL, keys, args)
                if int(left) > 0:
                    self.until[counter_id] = now + int(left) / 1000
                return
        minute = int(time.time() // 60)
        was, count = self._fails.get(counter_id, (minute, 0))
        count = count + 1 if was == minute else 1
        self._fails[counter_id] = (minute, count)
        if at_once or count > self.allowed_fails:
            self.until[counter_id] = now + self.cooldown_time

    def start(self) -> None:
        """Read the shared cooldowns about once a second (with Redis), from now on in this loop."""
        if self.link is not None and self._watched and (self._poller is None or self._poller.done()):
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        link = self.link
        assert link is not None
        keys: list[Any] = [f"{PREFIX}:{i}".encode() for i in self._watched]
        while True:
            with contextlib.suppress(RedisDown):
                left = await link.call("cooldown", lua.COOLDOWNS, keys, [])
                now = time.monotonic()
                for counter_id, ms in zip(self._watched, left, strict=True):
                    if int(ms) > 0:
                        self.until[counter_id] = now + int(ms) / 1000
                    elif counter_id in self.until and self.until[counter_id] > now:
                        del self.until[counter_id]  # lifted (or expired) where it is shared
            await asyncio.sleep(self.poll_interval)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
