"""``DualCache``: LiteLLM's cache API, in memory, with TTLs and a size bound.

One instance per gateway is handed to ``async_pre_call_hook`` as ``cache``. Values
live until their ``ttl`` (seconds) passes; past ``max_size`` entries the least
recently written go first, so a hook that writes a key per request cannot grow
memory without end. Extra keyword arguments LiteLLM passes (``local_only``,
``parent_otel_span``...) are accepted and ignored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class DualCache:
    """In-memory key/value cache with per-key TTL (LiteLLM's ``DualCache`` without Redis)."""

    def __init__(self, default_ttl: float | None = None, max_size: int = 100_000) -> None:
        self.default_ttl = default_ttl
        self.max_size = max_size
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

    async def async_set_cache(self, key: str, value: Any, ttl: float | None = None, **kwargs: Any) -> None:
        self.set_cache(key, value, ttl=ttl, **kwargs)

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        return self.get_cache(key)

    async def async_batch_get_cache(self, keys: list[str], **kwargs: Any) -> list[Any]:
        return self.batch_get_cache(keys)

    async def async_increment_cache(self, key: str, value: float, ttl: float | None = None, **kwargs: Any) -> float:
        return self.increment_cache(key, value, ttl=ttl)

    async def async_delete_cache(self, key: str, **kwargs: Any) -> None:
        self.delete_cache(key)

    def __len__(self) -> int:
        return len(self._data)
