"""``UpstreamTrace``: what the terminal app tells observers about one request's upstream call.

An observer (the logging layer) puts one in ``scope["state"]`` with ``set_trace``;
``UpstreamApp`` fills it when present, and does nothing extra when absent:

- ``deployment``, ``url`` and ``sent`` (the exact body dict sent upstream);
- ``attempts``, with ``on_attempt(trace)`` called just before each one;
- ``status``, ``started``/``headers_at``/``ended`` (``perf_counter`` times);
- ``raw``: the upstream's answer as bytes, kept for non-streams (streams only
  with ``keep_raw``), and ``on_response(trace)`` once it is complete;
- ``usage``: the upstream's ``usage`` (a JSON reply's, or a stream's). With ``want_usage`` the upstream is asked for
  ``stream_options.include_usage``; when the client did not ask for it, the
  usage-only chunk is taken out right where it arrives (``UsageTap``), so no hook
  and no client sees a chunk it did not ask for.
- ``client_gone``: the client left and the upstream call was cancelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from asgi_llm.context import scope_state
from asgi_llm.router import Deployment
from asgi_llm.sse import SSEDecoder, is_sse
from asgi_llm.types import Message, Scope, Send

TRACE_KEY = "asgi_llm.trace"
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_decode = msgspec.json.decode


class UpstreamTrace:
    """See the module docstring."""

    __slots__ = ("attempts", "client_gone", "deployment", "ended", "headers_at", "keep_raw", "on_attempt",
                 "on_response", "raw", "sent", "started", "status", "strip_usage", "tapping", "url", "usage",
                 "want_usage")

    def __init__(self, *, want_usage: bool = False, keep_raw: bool = False,
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
        self.status: int | None = None
        self.started: float | None = None
        self.headers_at: float | None = None
        self.ended: float | None = None
        self.raw: bytes | None = None
        self.usage: dict[str, Any] | None = None
        self.strip_usage = False
        self.tapping = False  # this stream goes through a UsageTap (set by ask_for_usage)
        self.client_gone = False

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


class UsageTap:
    """Reads a relayed SSE stream for its usage chunk, and removes it when ``trace.strip_usage``.

    Only events whose data holds a ``"usage": {`` object are parsed; a network chunk of
    whole events without one passes as is. Everything passes as its exact bytes; a
    chunk that completes no event yields nothing until the event is whole. With
    ``trace.keep_raw`` the upstream's bytes are kept as ``trace.raw``.
    """

    __slots__ = ("decoder", "kept", "trace")

    def __init__(self, trace: UpstreamTrace) -> None:
        self.trace = trace
        self.decoder = SSEDecoder()
        self.kept: list[bytes] | None = [] if trace.keep_raw else None

    def feed(self, chunk: bytes) -> bytes:
        if self.kept is not None:
            self.kept.append(chunk)
        if chunk.endswith(b"\n\n") and not self.decoder.pending and b"\r" not in chunk:
            named = chunk.count(b'"usage"')
            nulls = chunk.count(b'"usage":null') if named else 0
            if named == nulls:
                return chunk  # whole events, no usage object (OpenAI sends "usage":null): passed unparsed
            if named == nulls + 1:  # one usage object among whole LF events: look at that event only
                kept = self._one_event(chunk)
                if kept is not None:
                    return kept
        return self._keep(self.decoder.feed(chunk))

    def _one_event(self, chunk: bytes) -> bytes | None:
        found = _USAGE.search(chunk)
        if found is None:
            return None
        before = chunk.rfind(b"\n\n", 0, found.start())
        start = before + 2 if before >= 0 else 0
        end = chunk.find(b"\n\n", found.end()) + 2
        event = chunk[start:end - 2]
        if not event.startswith(b"data: ") or b"\n" in event:
            return None
        try:
            parsed = _decode(event[6:])
        except msgspec.DecodeError:
            return None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("usage"), dict):
            return None
        self.trace.usage = parsed["usage"]
        if self.trace.strip_usage and not parsed.get("choices"):
            return chunk[:start] + chunk[end:]  # the usage-only chunk the client never asked for
        return chunk

    def flush(self) -> bytes:
        if self.kept is not None:
            self.trace.raw = b"".join(self.kept)
        return self._keep(self.decoder.flush())

    def _keep(self, events: list[Any]) -> bytes:
        kept: list[bytes] = []
        for event in events:
            if event.is_json() and _USAGE.search(event.payload):
                found = event.json
                if isinstance(found, dict) and isinstance(found.get("usage"), dict):
                    self.trace.usage = found["usage"]
                    if self.trace.strip_usage and not found.get("choices"):
                        continue  # the usage-only chunk the client never asked for
            kept.append(event.raw)
        return b"".join(kept)




def traced_send(send: Send, trace: UpstreamTrace) -> Send:
    """``send`` for an in-process answer to a tapped stream (the mock's): an SSE answer goes
    through a ``UsageTap``; any other answer passes untouched."""
    tap: UsageTap | None = None

    async def traced(message: Message) -> None:
        nonlocal tap
        if message["type"] == "http.response.start":
            tap = trace.tap() if is_sse(message) else None
        elif tap is not None:
            body: bytes = message.get("body", b"")
            out = tap.feed(body) if body else b""
            more = message.get("more_body", False)
            if not more:
                out += tap.flush()
            if out or not more:
                await send({"type": "http.response.body", "body": out, "more_body": more})
            return
        await send(message)

    return traced
