"""``RedisState``: rate limits checked on Redis (one script call per request each way), exact across
every worker and instance sharing it.

``admit`` runs ``lua.ACQUIRE`` (pipelined with other requests' calls by the link):
every check of the plan, the choice of deployment and the read of the cache entry in
one atomic step on the server's clock. ``settle``
runs ``lua.SETTLE``: leases freed, token reservations corrected, and the answer
stored, again one step. Leases held by this worker are renewed every third of
``lease_ttl`` by one background script call, so a live stream keeps its lease and a
crashed worker's leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from asgi_llm.shared import lua
from asgi_llm.shared.limits import PARALLEL, WINDOW, Check, Plan, Verdict
from asgi_llm.shared.redis_link import RedisDown, RedisLink

_encode = msgspec.json.Encoder().encode  # a script's arguments as one JSON text: one argument to send


class RedisState:
    """See the module docstring."""

    def __init__(self, link: RedisLink, lease_ttl: float = 60.0) -> None:
        self.link = link
        self.lease_ttl = lease_ttl
        self._held: dict[str, list[str]] = {}  # lease id -> the lease sets it is in
        self._renewer: asyncio.Task[None] | None = None

    async def admit(self, plan: Plan, lease: str, cache_key: str | None, hit: bool,
                    max_age: float | None = None) -> Verdict:
        """Check ``plan`` (and read ``cache_key``, no older than ``max_age`` seconds) in one step."""
        checks = plan.checks()
        keys: list[Any] = [c.key.encode() for c in checks]  # bytes: redis-py checks a str's type five times
        flat: list[Any] = []
        for c in checks:
            flat += (c.kind, c.limit, c.amount)
        args = [_encode([int(WINDOW * 1000), lease, int(self.lease_ttl * 1000), len(plan.mandatory),
                         1 if cache_key else 0, 1 if hit else 0, -1 if max_age is None else int(max_age * 1000),
                         [len(c) for c in plan.candidates], flat])]
        if cache_key:
            keys.append(cache_key.encode())
        reply = await self.link.call("admit", lua.ACQUIRE, keys, args)
        ok, index, reset_ms, window, cached = reply[:5]
        reset = int(reset_ms) / 1000
        if not ok:
            failed = checks[int(index) - 1]
            failed.used = int(reply[5])
            for check, used in zip(plan.mandatory, reply[6:], strict=True):
                check.used = int(used)
            return Verdict(False, reset, int(window), taken=[c for c in plan.mandatory if c is not failed],
                           failed=failed)
        taken = list(plan.mandatory)
        chosen = None
        if index:
            start = len(plan.mandatory) + sum(len(c) for c in plan.candidates[: int(index) - 1])
            taken += checks[start:start + len(plan.candidates[int(index) - 1])]
            chosen = plan.deployments[int(index) - 1]
        for check, used in zip(taken, reply[5:], strict=True):
            check.used = int(used)
        sets = [c.key for c in taken if c.kind == PARALLEL]
        if sets:
            self._hold(lease, sets)
        return Verdict(True, reset, int(window), chosen=chosen, cached=cached or None, taken=taken)

    async def settle(self, lease: str, window: int, changes: list[tuple[Check, int]],
                     store: tuple[str, bytes, int] | None) -> None:
        """Free the lease, correct tokens by each delta, and store ``(key, entry, ttl ms)``: one step."""
        self._held.pop(lease, None)
        keys: list[Any] = [c.key.encode() for c, _ in changes]
        flat: list[Any] = []
        for check, delta in changes:
            flat += (check.kind, delta)
        args: list[Any] = [_encode([lease, window, flat])]
        if store is not None:
            keys.append(store[0].encode())
            args += (store[1], b"%d" % store[2])
        await self.link.call("settle", lua.SETTLE, keys, args)

    def _hold(self, lease: str, sets: list[str]) -> None:
        self._held[lease] = sets
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Push out the expiry of every lease this worker holds, while it holds any."""
        while self._held:
            await asyncio.sleep(self.lease_ttl / 3)
            keys: list[str] = []
            args: list[Any] = [int(self.lease_ttl * 1000)]
            for lease, sets in list(self._held.items()):
                keys += sets
                args += [lease] * len(sets)
            if not keys:
                continue
            with contextlib.suppress(RedisDown):  # counted and logged by the link; the next round tries again
                await self.link.call("renew", lua.RENEW, keys, args)
