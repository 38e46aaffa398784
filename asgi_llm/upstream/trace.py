"""``UpstreamTrace``: what the terminal app tells observers about one request's upstream call.

An observer (the logging layer) puts one in ``scope["state"]`` with ``set_trace``;
``UpstreamApp`` fills it when present, and does nothing extra when absent:

- ``deployment``, ``url`` and ``sent`` (the exact body dict sent upstream);
- ``attempts``, with ``on_attempt(trace)`` called just before each one;
- ``upstream_status``, ``started``/``headers_at``/``ended`` (``perf_counter`` times);
- ``raw``: the upstream's answer as bytes, kept for non-streams (streams only
  with ``keep_raw``), and ``on_response(trace)`` once it is complete;
- ``usage``: the upstream's ``usage`` (a JSON reply's, or a stream's). With
  ``want_usage`` the upstream is asked for ``stream_options.include_usage``; when the client did not ask for it, the
  usage-only chunk is taken out right where it arrives (``UsageTap``), so no hook
  and no client sees a chunk it did not ask for.
- ``client_gone``: the client left and the upstream call was cancelled.
- ``cache_hit``: the answer came from the response cache (no upstream call at all).
- ``failed``: the router's attempts that failed before the last one (model group, deployment,
  status, code), in order: retries elsewhere and fallbacks.

The logging layer's ``CallRecord`` holds one as ``record.trace``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgi_llm.request.context import RequestContext, scope_state
from asgi_llm.types import Scope
from asgi_llm.upstream.router import Deployment
from asgi_llm.upstream.usage_tap import UsageTap

TRACE_KEY = "asgi_llm.trace"


class UpstreamTrace:
    """See the module docstring."""

    __slots__ = ("attempts", "cache_hit", "client_gone", "deployment", "ended", "failed", "headers_at", "keep_raw",
                 "on_attempt",
                 "on_response", "raw", "sent", "started", "strip_usage", "tapping", "upstream_status", "url", "usage",
                 "want_usage")

    def __init__(self, want_usage: bool = False, keep_raw: bool = False,
                 on_attempt: Callable[[UpstreamTrace], None] | None = None,
                 on_response: Callable[[UpstreamTrace], None] | None = None) -> None:
        self.want_usage = want_usage
        self.keep_raw = keep_raw
        self.on_attempt = on_attempt
        self.on_response = on_response
        self.deployment: Deployment | None = None
        self.url: str | None = None
        self.sent: dict[str, Any] | None = None
        self.attempts = 0
        self.upstream_status: int | None = None
        self.started: float | None = None
        self.headers_at: float | None = None
        self.ended: float | None = None
        self.raw: bytes | None = None
        self.usage: dict[str, Any] | None = None
        self.strip_usage = False
        self.tapping = False  # this stream goes through a UsageTap (set by ask_for_usage)
        self.client_gone = False
        self.cache_hit = False  # answered from the response cache: no upstream call
        self.failed: list[dict[str, Any]] = []  # attempts that failed before the one that answered (the router's)

    def begin(self, now: float) -> None:
        """An upstream attempt starts now."""
        self.attempts += 1
        self.started = self.started or now
        if self.on_attempt is not None:
            self.on_attempt(self)

    def done(self, raw: bytes | None, now: float) -> None:
        """The upstream's answer is complete (``raw``: its body, when kept)."""
        self.ended = now
        if raw is not None:
            self.raw = raw
        if self.on_response is not None:
            self.on_response(self)

    def describe(self, dep: Deployment, url: str, sent: dict[str, Any], ctx: RequestContext) -> None:
        """The call about to go upstream; a streamed completion's body is made to ask for usage."""
        self.deployment, self.url, self.sent = dep, url, sent
        if ctx.stream and self.want_usage and ctx.call_type in ("completion", "text_completion"):
            self.ask_for_usage(sent)

    def ask_for_usage(self, body: dict[str, Any]) -> None:
        """Make a streaming body ask for usage and tap its answer; strip the usage if the client
        did not ask for it."""
        self.tapping = True
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return
        body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) else {
            "include_usage": True}
        self.strip_usage = True

    def tap(self) -> UsageTap | None:
        """The filter a streamed answer goes through, when this trace taps streams."""
        return UsageTap(self) if self.tapping else None


def get_trace(scope: Scope) -> UpstreamTrace | None:
    state = scope.get("state")
    return state.get(TRACE_KEY) if state else None


def set_trace(scope: Scope, trace: UpstreamTrace) -> None:
    scope_state(scope)[TRACE_KEY] = trace
