"""``SharedState``: limits and the response cache behind one pair of calls, wherever they live.

``admit`` checks a request's plan and reads its cache entry, ``settle`` frees its
leases, corrects its tokens and stores its answer. With Redis each is one round
trip (and none when there is nothing to check, read or write); without Redis both
are plain memory operations. When Redis fails, ``admit`` answers per
``rate_limit_fail``: ``open`` admits without limits, ``closed`` refuses with 503;
the cache is bypassed either way.

Only local memory may refuse without asking Redis, never admit: a request counter
Redis found full stays full until its window ends (requests are never given back),
so until then this worker refuses on that counter by itself.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from asgi_llm.config.schema import CacheParams
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.errors import GatewayError
from asgi_llm.shared.cache_entry import stamped, stored_at
from asgi_llm.shared.limits import REQUESTS, Check, LimitTable, Plan, Verdict
from asgi_llm.shared.local_state import LocalState
from asgi_llm.shared.local_store import LocalStore
from asgi_llm.shared.redis_link import RedisDown, RedisLink
from asgi_llm.shared.redis_state import RedisState

REDIS_DEFAULT_TTL = 24 * 3600.0  # an answer with no TTL set is kept this long in Redis


@dataclass(slots=True)
class Lookup:
    """What ``admit`` found: the limits' verdict (None: no limits to check), the stored entry, and
    whether the cache could be read at all."""

    verdict: Verdict | None
    stored: bytes | None
    cache_up: bool = True


class SharedState:
    """See the module docstring. ``params`` None: no response cache."""

    def __init__(self, table: LimitTable, *, link: RedisLink | None = None, params: CacheParams | None = None,
                 cache_in_redis: bool = False, lease_ttl: float = 60.0, fail_closed: bool = False,
                 metrics: GatewayMetrics | None = None) -> None:
        self.table = table
        self.link = link
        self.metrics = metrics
        self.fail_closed = fail_closed
        self.redis = RedisState(link, lease_ttl) if link is not None else None
        self.local = LocalState()
        self.cache_in_redis = cache_in_redis and link is not None
        self.store = LocalStore(params.max_entries, params.max_bytes) if params and not self.cache_in_redis else None
        self._full: dict[str, float] = {}  # request counters known full, until their window ends (monotonic)

    async def admit(self, plan: Plan, lease: str, key: str | None, max_age: float | None) -> Lookup:
        """Check ``plan`` and read the entry at ``key`` (None: no cache read), as one step."""
        if self._full and plan:
            refused = self._known_full(plan)
            if refused is not None:
                return Lookup(refused, None)
        stored = None
        if key is not None and self.store is not None:
            stored = self.store.get(key)
            if stored is not None and max_age is not None and _age(stored) > max_age:
                stored = None
        redis_key = key if self.cache_in_redis else None
        if self.redis is None or not (plan or redis_key):
            return Lookup(self._note(self.local.admit(plan, lease, stored is not None)) if plan else None, stored)
        try:
            verdict = self._note(await self.redis.admit(plan, lease, redis_key, stored is not None, max_age))
        except RedisDown:
            if plan and self.fail_closed:
                raise GatewayError(503, "Rate limits cannot be checked right now (the shared store is down); "
                                   "try again shortly.", code="rate_limit_store_unavailable",
                                   headers={"retry-after": "1"}) from None
            return Lookup(None, stored, cache_up=redis_key is None)
        if redis_key is not None:
            stored = verdict.cached
        return Lookup(verdict if plan else None, stored)

    def _known_full(self, plan: Plan) -> Verdict | None:
        now = time.monotonic()
        for check in plan.mandatory:
            until = self._full.get(check.key)
            if until is not None:
                if until > now:
                    check.used = check.limit
                    return Verdict(False, until - now, failed=check)
                del self._full[check.key]
        return None

    def _note(self, verdict: Verdict) -> Verdict:
        """Remember a full request counter until its window ends."""
        failed = verdict.failed
        if failed is not None and failed.kind == REQUESTS and failed.scope != "deployment":
            if len(self._full) > 10_000:
                self._full.clear()
            self._full[failed.key] = time.monotonic() + verdict.reset
        return verdict

    async def settle(self, lease: str, verdict: Verdict | None, changes: list[tuple[Check, int]],
                     store: tuple[str, bytes, float | None] | None) -> None:
        """Free the lease, correct tokens, store ``(key, packed entry, ttl)``; a Redis fault loses only
        this (leases then expire by themselves)."""
        if store is not None and self.store is not None:
            self.store.set(store[0], stamped(store[1]), store[2])
            store = None
        if verdict is None:
            changes = []
        if self.redis is None:
            if changes and verdict is not None:
                self.local.settle(lease, verdict.window, changes)
            return
        if not changes and store is None:
            return
        ttl_ms = int((store[2] or REDIS_DEFAULT_TTL) * 1000) if store is not None else 0
        with contextlib.suppress(RedisDown):  # counted and logged by the link
            await self.redis.settle(lease, verdict.window if verdict is not None else 0, changes,
                                    (store[0], store[1], ttl_ms) if store is not None else None)

    async def aclose(self) -> None:
        if self.link is not None:
            await self.link.aclose()


def _age(stored: bytes) -> float:
    try:
        return time.time() - stored_at(stored)
    except ValueError:
        return float("inf")
