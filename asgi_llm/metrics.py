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
set. A call's numbers are only noted when it ends (one tuple) and counted in batches
(every 256 calls, and before each hand-over) into plain accumulators per label set;
those are handed to prometheus-client at least once a second and before every
``render`` (it takes a lock per value and walks the buckets in Python: ~7 µs a call
if done per call). With several
workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``asgi-llm --workers N`` does),
``render`` adds up every worker's values (each at most a second behind).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from asgi_llm.errors import GatewayError
from asgi_llm.metric_acc import Count, HistogramAcc

if TYPE_CHECKING:
    from asgi_llm.log_record import CallRecord


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
        self._pending: dict[tuple[Any, ...], Any] = {}
        self._calls: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._records: list[tuple[Any, ...]] = []  # calls noted, not yet counted
        self.inflight = 0  # streams started minus ended, not yet handed over
        self._armed = False

    def label(self, model: str | None) -> str:
        return model if model in self.models else "other"

    def count(self, metric: Any, *labels: str) -> Count:
        key = (id(metric), *labels)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = Count(metric.labels(*labels))
        return found

    def histogram(self, metric: Any, bounds: tuple[float, ...], *labels: str) -> HistogramAcc:
        key = (id(metric), *labels)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = HistogramAcc(metric.labels(*labels), bounds)
        return found

    def _series(self, model: str, route: str, status: int) -> tuple[Any, ...]:
        """Every accumulator one (model, route, status) call touches, found once."""
        return (self.count(self.requests, model, route, str(status)),
                self.histogram(self.duration, LATENCY, model, route), self.histogram(self.upstream, LATENCY, model),
                self.histogram(self.overhead, OVERHEAD, model), self.histogram(self.ttft, LATENCY, model),
                self.count(self.tokens, model, "input"), self.count(self.tokens, model, "output"),
                self.count(self.cost, model))

    def observe_call(self, model: str, route: str, status: int, total: float, upstream: float | None,
                     ttft: float | None, usage: tuple[int, int, float | None] | None = None) -> None:
        """One call: its status, durations and, when it succeeded, ``(prompt, completion, cost)``."""
        key = (model, route, status)
        series = self._calls.get(key)
        if series is None:
            series = self._calls[key] = self._series(model, route, status)
        requests, duration, upstream_time, overhead, first_token, tokens_in, tokens_out, cost = series
        requests.value += 1
        duration.observe(total)
        if upstream is not None:
            upstream_time.observe(upstream)
        overhead.observe(max(total - (upstream or 0.0), 0.0))
        if ttft is not None:
            first_token.observe(ttft)
        if usage is not None:
            tokens_in.value += usage[0]
            tokens_out.value += usage[1]
            if usage[2]:
                cost.value += usage[2]

    def observe_record(self, rec: CallRecord, failed: bool) -> None:
        """One call as the logging layer saw it: noted, counted at the next ``flush`` (a tight loop over
        many calls costs far less than the same work done in each call); errors by type at once."""
        dep = rec.deployment
        model = dep.model_name if dep is not None else ctx.model if (ctx := rec.ctx) is not None else None
        self._records.append((model, rec.route.path, 499 if rec.client_gone else rec.status, rec.start, rec.end,
                              rec.started, rec.ended, rec.first_byte if rec.sse else None,
                              None if failed else (rec.prompt_tokens or 0, rec.completion_tokens, rec.cost)))
        if failed:
            self._failed(rec, self.label(model))
        if not self._armed:  # hand over within a second, for scrapes (and other workers')
            self._armed = True
            asyncio.get_running_loop().call_later(1.0, self.flush)
        elif len(self._records) >= 256:  # small batches: no pause a client would see
            self._tally()

    def _failed(self, rec: CallRecord, model: str) -> None:
        """A failed call's upstream error by type and moderation rejection, under its ``model`` label."""
        ctx, error, status = rec.ctx, rec.error, rec.upstream_status
        code = error.code if isinstance(error, GatewayError) else None
        if status is not None and status >= 400:
            self.count(self.upstream_errors, model, f"http_{status}").value += 1
        elif isinstance(code, str) and code.startswith("upstream"):
            self.count(self.upstream_errors, model, code).value += 1
        if ctx is not None and ctx.notes.get("moderation_rejected"):
            self.count(self.moderation_rejections, model).value += 1

    def flush(self) -> None:
        """Hand every pending observation to prometheus-client."""
        self._armed = False
        self._tally()
        for pending in self._pending.values():
            pending.flush()
        if self.inflight:
            self.inflight_streams.inc(self.inflight)
            self.inflight = 0

    def _tally(self) -> None:
        """Count the noted calls into the accumulators."""
        records, self._records = self._records, []
        label, observe = self.label, self.observe_call
        for model, route, status, start, end, started, ended, first, usage in records:
            observe(label(model), route, status, (end or start) - start, ended - started
                    if started is not None and ended is not None else None,
                    first - start if first is not None else None, usage)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (every worker's, in multi-worker mode)."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
