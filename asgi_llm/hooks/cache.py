"""``DualCache``: LiteLLM's cache API for hooks: memory first, then Redis when one is configured.

One instance per gateway is handed to ``async_pre_call_hook`` as ``cache``. Values
live until their ``ttl`` (seconds) passes; past ``max_size`` entries the least
recently written go first, so a hook that writes a key per request cannot grow
memory without end. Extra keyword arguments LiteLLM passes (``parent_otel_span``...)
are accepted and ignored; ``local_only=True`` keeps a call in memory.

With Redis (``cache_params``/``router_settings``/``REDIS_*``), the async methods share
values across workers and instances: writes go to both, reads try memory then Redis,
and ``async_increment_cache`` is one atomic increment in Redis that returns the shared
total, so a hook counting like LiteLLM's parallel request limiter counts every
worker's calls. A value held in memory while Redis is on is kept at most
``in_memory_ttl`` seconds, so another worker's writes are seen within that time.
Values travel as JSON. When Redis fails, the calls fall back to memory (the fault is
counted and logged by the link). The sync methods are memory only, as LiteLLM's are.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Any

import msgspec

from asgi_llm.shared import lua
from asgi_llm.shared.redis_link import RedisDown, RedisLink

_encode = msgspec.json.Encoder(decimal_format="number").encode


def _dumps(value: Any) -> bytes:
    try:
        return _encode(value)
    except (TypeError, msgspec.EncodeError):
        return _encode(str(value))


def _loads(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace")


class DualCache:
    """See the module docstring."""

    def __init__(self, default_ttl: float | None = None, max_size: int = 100_000, *, redis: RedisLink | None = None,
                 namespace: str = "asgi-llm:dualcache", in_memory_ttl: float = 1.0) -> None:
        self.default_ttl = default_ttl
        self.max_size = max_size
        self.redis = redis
        self.namespace = namespace
        self.in_memory_ttl = in_memory_ttl
        self._data: OrderedDict[str, tuple[Any, float | None]] = OrderedDict()

    def _live(self, key: str) -> tuple[bool, Any]:
        found = self._data.get(key)
        if found is None:
            return False, None
        value, expires = found
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return False, None
        return True, value

    def set_cache(self, key: str, value: Any, ttl: float | None = None, **kwargs: Any) -> None:
        ttl = ttl if ttl is not None else kwargs.get("local_ttl", self.default_ttl)
        self._data[key] = (value, time.monotonic() + ttl if ttl is not None else None)
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def get_cache(self, key: str, **kwargs: Any) -> Any:
        return self._live(key)[1]

    def batch_get_cache(self, keys: list[str], **kwargs: Any) -> list[Any]:
        return [self._live(k)[1] for k in keys]

    def increment_cache(self, key: str, value: float, ttl: float | None = None, **kwargs: Any) -> float:
        present, current = self._live(key)
        total = (current if present and isinstance(current, int | float) else 0) + value
        expires = self._data[key][1] if present else None
        if present and ttl is None:
            self._data[key] = (total, expires)  # keep the running window's original expiry
        else:
            self.set_cache(key, total, ttl=ttl)
        return total

    def delete_cache(self, key: str, **kwargs: Any) -> None:
        self._data.pop(key, None)

    def flush_cache(self) -> None:
        self._data.clear()

    def _shared(self, kwargs: dict[str, Any]) -> RedisLink | None:
        return None if kwargs.get("local_only") else self.redis

    def _memory_ttl(self, ttl: float | None) -> float:
        """How long a copy of a shared value stays in memory: never longer than ``in_memory_ttl``."""
        return self.in_memory_ttl if ttl is None else min(ttl, self.in_memory_ttl)

    async def async_set_cache(self, key: str, value: Any, ttl: float | None = None, **kwargs: Any) -> None:
        link = self._shared(kwargs)
        if link is None:
            self.set_cache(key, value, ttl=ttl, **kwargs)
            return
        self.set_cache(key, value, ttl=self._memory_ttl(ttl if ttl is not None else self.default_ttl))
        ttl = ttl if ttl is not None else self.default_ttl
        client, name, raw = link.client, self.namespace + ":" + key, _dumps(value)
        try:
            await link.run("dual_cache", lambda: client.set(name, raw, px=int(ttl * 1000) if ttl else None))
        except RedisDown:
            self.set_cache(key, value, ttl=ttl)  # kept here at least

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        present, value = self._live(key)
        link = self._shared(kwargs)
        if present or link is None:
            return value
        client, name = link.client, self.namespace + ":" + key
        try:
            raw = await link.run("dual_cache", lambda: client.get(name))
        except RedisDown:
            return None
        found = _loads(raw)
        if found is not None:
            self.set_cache(key, found, ttl=self.in_memory_ttl)
        return found

    async def async_batch_get_cache(self, keys: list[str], **kwargs: Any) -> list[Any]:
        found = [self._live(k) for k in keys]
        link = self._shared(kwargs)
        missing = [k for k, (present, _) in zip(keys, found, strict=True) if not present]
        if link is None or not missing:
            return [value for _, value in found]
        client, names = link.client, [self.namespace + ":" + k for k in missing]
        try:
            raws = await link.run("dual_cache", lambda: client.mget(names))
        except RedisDown:
            return [value for _, value in found]
        shared = dict(zip(missing, map(_loads, raws), strict=True))
        for k, v in shared.items():
            if v is not None:
                self.set_cache(k, v, ttl=self.in_memory_ttl)
        return [value if present else shared.get(k) for k, (present, value) in zip(keys, found, strict=True)]

    async def async_increment_cache(self, key: str, value: float, ttl: float | None = None, **kwargs: Any) -> float:
        link = self._shared(kwargs)
        if link is None:
            return self.increment_cache(key, value, ttl=ttl)
        name = self.namespace + ":" + key
        try:
            raw = await link.call("dual_cache", lua.INCREMENT, [name], [value, int(ttl * 1000) if ttl else ""])
        except RedisDown:
            return self.increment_cache(key, value, ttl=ttl)
        total = float(raw)
        result: float = int(total) if isinstance(value, int) and total.is_integer() else total
        self.set_cache(key, result, ttl=self._memory_ttl(ttl))
        return result

    async def async_delete_cache(self, key: str, **kwargs: Any) -> None:
        self.delete_cache(key)
        link = self._shared(kwargs)
        if link is None:
            return
        client, name = link.client, self.namespace + ":" + key
        with contextlib.suppress(RedisDown):  # counted and logged by the link
            await link.run("dual_cache", lambda: client.delete(name))

    def __len__(self) -> int:
        return len(self._data)
