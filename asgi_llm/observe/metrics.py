"""``GatewayMetrics``: the gateway's Prometheus metrics (prometheus-client).

Names (all prefixed ``asgi_llm_``): ``requests_total{model,route,status}``,
``request_duration_seconds{model,route}`` (the whole call, to the last byte),
``upstream_duration_seconds{model}``, ``overhead_seconds{model}`` (the gateway's
own time: the whole call minus the upstream part), ``time_to_first_token_seconds
{model}`` (streams: to the first body byte served), ``tokens_total{model,direction}``
(``input``/``output``), ``cost_usd_total{model}``, ``upstream_errors_total{model,type}``,
``moderation_rejections_total{model}``, ``inflight_streams``,
``log_events_dropped_total``, and for shared state ``cache_requests_total{result}``
(``hit``/``miss``/``bypass``), ``rate_limit_rejections_total{scope}``,
``redis_errors_total{op}`` and ``redis_roundtrip_seconds{op}``; the upstream pool's
``upstream_pool_waits_total``, ``upstream_pool_timeouts_total`` and ``upstream_pool_waiting``;
``shed_total{reason}`` (admission control).

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
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from asgi_llm.observe.metric_acc import Count, HistogramAcc
from asgi_llm.request.errors import GatewayError

_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)

if TYPE_CHECKING:
    from asgi_llm.observe.record import CallRecord


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
        self.cache_requests = Counter("asgi_llm_cache_requests", "Response cache lookups by result.", ["result"],
                                      registry=r)
        self.rate_limit_rejections = Counter("asgi_llm_rate_limit_rejections", "Calls refused by a rate limit.",
                                             ["scope"], registry=r)
        self.redis_errors = Counter("asgi_llm_redis_errors", "Redis faults by operation.", ["op"], registry=r)
        self.redis_roundtrip = Histogram("asgi_llm_redis_roundtrip_seconds", "One Redis round trip, by operation.",
                                         ["op"], buckets=OVERHEAD, registry=r)
        self.pool_waits = Counter("asgi_llm_upstream_pool_waits", "Calls that waited for an upstream connection.",
                                  registry=r)
        self.pool_timeouts = Counter("asgi_llm_upstream_pool_timeouts", "Calls refused: no connection within "
                                     "pool_timeout.", registry=r)
        self.pool_waiting = Gauge("asgi_llm_upstream_pool_waiting", "Calls waiting for an upstream connection now.",
                                  registry=r, multiprocess_mode="livesum")
        self.shed = Counter("asgi_llm_shed", "Calls refused by admission control, by reason.", ["reason"],
                            registry=r)
        self._pending: dict[tuple[Any, ...], Any] = {}
        self._calls: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._rows: dict[tuple[str | None, str, int], list[tuple[Any, ...]]] = {}  # noted per series, not counted
        self._noted = 0
        self.inflight = 0  # streams started minus ended, not yet handed over
        self._armed = False

    def label(self, model: str | None) -> str:
        return model if model in self.models else "other"

    def count(self, metric: Any, *labels: str) -> Count:
        key = (id(metric), *labels)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = Count(metric.labels(*labels) if labels else metric)
        return found

    def histogram(self, metric: Any, bounds: tuple[float, ...], *labels: str) -> HistogramAcc:
        key = (id(metric), *labels)
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = HistogramAcc(metric.labels(*labels), bounds)
        return found

    def bump(self, metric: Any, *labels: str) -> None:
        """One more on a labelled counter, handed over within a second."""
        self.count(metric, *labels).value += 1
        self._arm()

    def roundtrip(self, op: str, seconds: float) -> None:
        """One Redis round trip's time."""
        self.histogram(self.redis_roundtrip, OVERHEAD, op).observe(seconds)
        self._arm()

    def _arm(self) -> None:
        if not self._armed:  # hand over within a second, for scrapes (and other workers')
            self._armed = True
            asyncio.get_running_loop().call_later(1.0, self.flush)

    def _series(self, model: str, route: str, status: int) -> tuple[Any, ...]:
        """Every accumulator one (model, route, status) call touches, found once."""
        return (self.count(self.requests, model, route, str(status)),
                self.histogram(self.duration, LATENCY, model, route), self.histogram(self.upstream, LATENCY, model),
                self.histogram(self.overhead, OVERHEAD, model), self.histogram(self.ttft, LATENCY, model),
                self.count(self.tokens, model, "input"), self.count(self.tokens, model, "output"),
                self.count(self.cost, model))

    def observe_record(self, rec: CallRecord, failed: bool) -> None:
        """One call as the logging layer saw it: its durations noted under its series, counted at the next
        ``_tally`` (column by column over many calls: far less than the same work done in each call);
        errors by type at once."""
        dep = rec.trace.deployment
        model = dep.model_name if dep is not None else ctx.model if (ctx := rec.ctx) is not None else None
        start, started, ended = rec.start, rec.trace.started, rec.trace.ended
        total = (rec.end or start) - start
        upstream = ended - started if started is not None and ended is not None else None
        key = (model, rec.route.path, 499 if rec.trace.client_gone else rec.status)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = []
        rows.append((total, upstream, max(total - upstream, 0.0) if upstream is not None else total,
                     rec.first_byte - start if rec.sse and rec.first_byte is not None else None,
                     None if failed else (rec.prompt_tokens or 0, rec.completion_tokens, rec.cost or 0.0)))
        self._noted += 1
        if failed:
            self._failed(rec, self.label(model))
        if not self._armed:
            self._arm()
        elif self._noted >= 256:  # small batches: no pause a client would see
            self._tally()

    def _failed(self, rec: CallRecord, model: str) -> None:
        """A failed call's upstream error by type and moderation rejection, under its ``model`` label."""
        ctx, error, status = rec.ctx, rec.error, rec.trace.upstream_status
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
        """Count the noted calls into the accumulators, a series at a time, a column at a time."""
        noted, self._rows, self._noted = self._rows, {}, 0
        for (model, route, status), rows in noted.items():
            key = (self.label(model), route, status)
            series = self._calls.get(key)
            if series is None:
                series = self._calls[key] = self._series(*key)
            requests, duration, upstream_time, overhead, first_token, tokens_in, tokens_out, cost = series
            requests.value += len(rows)
            totals, upstreams, overheads, firsts, usages = zip(*rows, strict=True)
            duration.observe_all(totals)
            overhead.observe_all(overheads)
            upstream_time.observe_all([u for u in upstreams if u is not None])
            first_token.observe_all([f for f in firsts if f is not None])
            used = [u for u in usages if u is not None]
            if used:
                tokens_in.value += sum(map(_first, used))
                tokens_out.value += sum(map(_second, used))
                cost.value += sum(map(_third, used))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (every worker's, in multi-worker mode)."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
