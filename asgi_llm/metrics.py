"""``GatewayMetrics``: the gateway's Prometheus metrics (prometheus-client).

Names (all prefixed ``asgi_llm_``): ``requests_total{model,route,status}``,
``request_duration_seconds{model,route}`` (the whole call, to the last byte),
``upstream_duration_seconds{model}``, ``overhead_seconds{model}`` (the gateway's
own time: the whole call minus the upstream part), ``time_to_first_token_seconds
{model}`` (streams: to the first body byte served), ``tokens_total{model,direction}``
(``input``/``output``), ``cost_usd_total{model}``, ``upstream_errors_total{model,type}``,
``moderation_rejections_total{model}``, ``inflight_streams``, and
``log_events_dropped_total``.

``model`` is a configured model name or ``other``, so clients cannot grow the label
set. Labelled children are cached per label tuple (``labels()`` takes a lock and
builds a tuple each time). With several workers (``PROMETHEUS_MULTIPROC_DIR`` set,
as ``asgi-llm --workers N`` does), ``render`` aggregates every worker's values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GatewayMetrics:
    """See the module docstring."""

    def __init__(self, models: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        self.models = frozenset(models)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("asgi_llm_requests", "LLM requests by model, route and status.",
                                ["model", "route", "status"], registry=r)
        self.duration = Histogram("asgi_llm_request_duration_seconds", "Whole call, to the last byte served.",
                                  ["model", "route"], buckets=LATENCY, registry=r)
        self.upstream = Histogram("asgi_llm_upstream_duration_seconds", "Upstream part of the call.",
                                  ["model"], buckets=LATENCY, registry=r)
        self.overhead = Histogram("asgi_llm_overhead_seconds", "The gateway's own time: the call minus upstream.",
                                  ["model"], buckets=OVERHEAD, registry=r)
        self.ttft = Histogram("asgi_llm_time_to_first_token_seconds", "Streams: time to the first byte served.",
                              ["model"], buckets=LATENCY, registry=r)
        self.tokens = Counter("asgi_llm_tokens", "Tokens by model and direction (input, output).",
                              ["model", "direction"], registry=r)
        self.cost = Counter("asgi_llm_cost_usd", "Cost in dollars, from model_info prices.", ["model"], registry=r)
        self.upstream_errors = Counter("asgi_llm_upstream_errors", "Upstream failures by type.",
                                       ["model", "type"], registry=r)
        self.moderation_rejections = Counter("asgi_llm_moderation_rejections", "Calls a moderation hook failed.",
                                             ["model"], registry=r)
        self.inflight_streams = Gauge("asgi_llm_inflight_streams", "Streams being served now.", registry=r,
                                      multiprocess_mode="livesum")
        self.dropped = Counter("asgi_llm_log_events_dropped", "Logging events dropped: the queue was full.",
                               registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def label(self, model: str | None) -> str:
        return model if model in self.models else "other"

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_call(self, model: str, route: str, status: int, total: float, upstream: float | None,
                     ttft: float | None) -> None:
        child = self.child
        child(self.requests, model, route, str(status)).inc()
        child(self.duration, model, route).observe(total)
        if upstream is not None:
            child(self.upstream, model).observe(upstream)
        child(self.overhead, model).observe(max(total - (upstream or 0.0), 0.0))
        if ttft is not None:
            child(self.ttft, model).observe(ttft)

    def observe_usage(self, model: str, prompt: int, completion: int, cost: float | None) -> None:
        self.child(self.tokens, model, "input").inc(prompt)
        self.child(self.tokens, model, "output").inc(completion)
        if cost:
            self.child(self.cost, model).inc(cost)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (every worker's, in multi-worker mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
