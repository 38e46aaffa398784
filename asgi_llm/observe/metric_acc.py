"""Plain accumulators for one labelled Prometheus series, handed to prometheus-client in bulk.

prometheus-client takes a lock per value and walks a histogram's buckets in Python;
``GatewayMetrics`` counts into these instead and calls ``flush`` at most once a second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import repeat
from typing import Any


class Count:
    """A labelled counter's increments not yet handed over."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value = 0.0

    def flush(self) -> None:
        if self.value:
            self.child.inc(self.value)
            self.value = 0.0


class HistogramAcc:
    """A labelled histogram's observations not yet handed over: counts per bucket and their sum."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # prometheus buckets are `value <= bound`
        self.total += value

    def observe_all(self, values: Sequence[float]) -> None:
        """Many observations: the bucket search runs in C (``map``), the sum in one call."""
        counts = self.counts
        for i in map(bisect_left, repeat(self.bounds), values):
            counts[i] += 1
        self.total += sum(values)

    def flush(self) -> None:
        buckets = self.child._buckets  # prometheus-client's own per-bucket values (no bulk API)
        for i, count in enumerate(self.counts):
            if count:
                buckets[i].inc(count)
                self.counts[i] = 0
        if self.total:
            self.child._sum.inc(self.total)
            self.total = 0.0
