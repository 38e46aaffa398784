"""``LocalStore``: the in-memory response cache (``cache_params.type: local``), bounded.

At most ``max_entries`` answers and ``max_bytes`` of them; past either, the least
recently used go first. An entry lives until its TTL (``None``: until evicted).
"""

from __future__ import annotations

import time
from collections import OrderedDict


class LocalStore:
    """See the module docstring. Values are stamped entries (``cache_entry.stamped``)."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        found = self._data.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._data:
            self._drop(key)
        self._data[key] = (value, time.monotonic() + ttl if ttl is not None else None)
        self.size += len(value)
        while len(self._data) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self._data)))

    def _drop(self, key: str) -> None:
        value, _ = self._data.pop(key)
        self.size -= len(value)

    def __len__(self) -> int:
        return len(self._data)
