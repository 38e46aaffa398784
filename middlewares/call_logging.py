"""``CallLogging``: logging callbacks, cost and metrics for every LLM call, from what was served.

It sits outside ``Errors``, so it sees each answer exactly as the client got it,
error answers included (the exception ``Errors`` rendered is in the record).

- Response headers on every LLM answer: ``x-asgi-llm-call-id``,
  ``x-asgi-llm-overhead-ms`` (the time until the headers minus the upstream part)
  and, for a non-streaming answer of a model with ``model_info`` prices,
  ``x-asgi-llm-response-cost`` (the start is held until the body is there to price).
- Events go to a ``LogQueue`` after the fact, never before a byte to the client:
  ``pre`` before each upstream attempt, ``post`` when its answer is in, ``stream``
  per served chunk, then ``success`` or ``failure`` once the last byte is sent.
  Failures are answers of 400 and up, errors inside a started stream, and clients
  that left (status 499 in metrics).
- Streams ask the upstream for usage; the terminal app takes it out again unless asked.
- Metrics: every call, its tokens and cost, upstream errors by type, moderation
  rejections, streams in flight.
- At lifespan shutdown, queued events are delivered before the app below is told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from time import perf_counter
from typing import Any

from asgi_llm.hooks.response import LazyObj, wrap
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.observe.queue import LogQueue
from asgi_llm.observe.record import CallRecord
from asgi_llm.observe.sinks import LogSinks
from asgi_llm.observe.standard import standard_logging_object
from asgi_llm.request.routes import match_route
from asgi_llm.sse.codec import SSEDecoder, is_sse
from asgi_llm.types import DONE, ASGIApp, Message, Receive, Scope, Send
from asgi_llm.upstream.trace import TRACE_KEY, set_trace

log = logging.getLogger("asgi_llm.logging")
Args = tuple[dict[str, Any], Any, Any, Any]


class _Call:
    """A call in flight as the layer sees it: its record, the layer's per-call state, and ``observe``,
    the ``send`` the app below gets."""

    __slots__ = ("decoder", "held", "layer", "order", "rec", "send")

    def __init__(self, layer: CallLogging, rec: CallRecord, send: Send) -> None:
        self.layer = layer
        self.rec = rec
        self.send = send
        self.held: Message | None = None  # a priced answer's start, until its body is there to price
        self.decoder = SSEDecoder() if layer.sinks.stream else None  # stream events for `stream` sinks
        self.order = asyncio.Lock() if layer.ordered else None  # one call's events in order

    def observe(self, message: Message) -> Awaitable[None]:
        """Notes what is served and stamps the headers; hands back the next ``send``'s awaitable, so no
        coroutine of its own per message."""
        rec = self.rec
        if message["type"] != "http.response.start":
            body: bytes = message.get("body", b"")
            if body:
                if rec.first_byte is None:
                    rec.first_byte = perf_counter()
                if self.layer.observing:
                    rec.served.append(body)
                if self.decoder is not None and rec.sse:
                    self.layer.stream_events(self, self.decoder.feed(body))
            more = message.get("more_body", False)
            if not more:
                rec.end = perf_counter()  # handed to the server
            if self.held is not None:
                start = self.held
                self.held = None
                return self.release(start, message, settle=not more)
            return self.send(message)
        rec.status = message["status"]
        rec.sse = is_sse(message)
        metrics = self.layer.metrics
        if rec.sse and metrics is not None:
            metrics.inflight += 1
        dep = rec.trace.deployment
        if not rec.sse and rec.status < 400 and dep is not None and dep.prices is not None:
            self.held = message  # priced: the cost header needs the body first
            return DONE
        return self.send(self.stamp(message))

    async def release(self, start: Message, message: Message, settle: bool) -> None:
        if settle:
            self.rec.settle_usage(message.get("body", b""))
        await self.send(self.stamp(start))
        await self.send(message)

    def stamp(self, message: Message) -> Message:
        """The call's headers, added to the start message. The header list is copied first (as Starlette's
        ``MutableHeaders`` does): an app may send the same list every time (the mock does)."""
        rec = self.rec
        trace = rec.trace
        now = perf_counter()
        started = trace.started
        upstream = (trace.ended or trace.headers_at or now) - started if started is not None else 0.0
        headers = message["headers"] = list(message.get("headers", ()))
        headers += ((b"x-asgi-llm-call-id", rec.call_id.encode()),
                    (b"x-asgi-llm-overhead-ms", b"%.3f" % ((now - rec.start - upstream) * 1000)))
        if rec.cost is not None and not rec.sse:
            headers.append((b"x-asgi-llm-response-cost", b"%.10f" % rec.cost))
        return message


class CallLogging:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, sinks: LogSinks | None = None, metrics: GatewayMetrics | None = None,
                 queue: LogQueue | None = None, shutdown_timeout: float = 30.0) -> None:
        self.app = app
        self.sinks = sinks if sinks is not None else LogSinks()
        self.metrics = metrics
        self.queue = queue if queue is not None else LogQueue(
            on_drop=metrics.dropped.inc if metrics is not None else None)
        self.shutdown_timeout = shutdown_timeout
        self.observing = bool(self.sinks) or metrics is not None  # keep served bytes, count tokens
        self.ordered = bool(self.sinks.pre or self.sinks.post or self.sinks.stream)  # events before the last

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match_route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, self._lifespan(receive) if scope["type"] == "lifespan" else receive, send)
            return
        rec = CallRecord(route, scope, self.observing, bool(self.sinks.post))
        call = _Call(self, rec, send)
        set_trace(scope, rec.trace)
        order = call.order
        if order is not None:
            sinks, queue = self.sinks, self.queue
            if sinks.pre:
                rec.trace.on_attempt = lambda _: queue.put(sinks.pre, lambda: self._args(rec, "pre_api_call"), order)
            if sinks.post:
                rec.trace.on_response = lambda _: queue.put(sinks.post, lambda: self._args(rec, "post_api_call"), order)
        try:
            await self.app(scope, receive, call.observe)
        finally:
            scope["state"].pop(TRACE_KEY, None)  # the record refers to the scope: leave no cycle for the GC
            rec.trace.on_attempt = rec.trace.on_response = None  # nor through the event lambdas, which refer to it
            try:
                self._finish(call)
            except Exception:  # a bug here must not turn a served answer into an error
                log.exception("logging of call %s failed", rec.call_id)

    def stream_events(self, call: _Call, events: list[Any]) -> None:
        """``stream`` events for the served chunks, in order."""
        rec, order = call.rec, call.order
        start = rec.at(rec.start)
        for event in events:
            chunk = event.json
            if isinstance(chunk, dict):
                now = rec.at(perf_counter())
                self.queue.put(self.sinks.stream, lambda c=chunk, t=now: (  # type: ignore[misc]
                    rec.kwargs("stream_event"), wrap(c), start, t), order)

    def _args(self, rec: CallRecord, event: str) -> Args:
        kwargs = rec.kwargs(event)
        return kwargs, None, kwargs["start_time"], kwargs["end_time"]

    def _final(self, rec: CallRecord, failed: bool) -> Args:
        kwargs = rec.kwargs("failed_api_call" if failed else "successful_api_call")
        kwargs["standard_logging_object"] = standard_logging_object(rec, kwargs, failed)
        # parsed (or, for a stream, assembled) only if a callback looks at it
        response = None if failed else LazyObj(rec.complete_response)
        if "complete_streaming_response" in kwargs:
            kwargs["complete_streaming_response"] = response
        return kwargs, response, kwargs["start_time"], kwargs["end_time"]

    def _finish(self, call: _Call) -> None:
        rec = call.rec
        rec.end = rec.end or perf_counter()
        metrics = self.metrics
        if metrics is not None and rec.sse:
            metrics.inflight -= 1
        if not self.observing:
            return
        failed = rec.failed
        if not failed:
            rec.settle_usage()
        if metrics is not None:
            metrics.observe_record(rec, failed)
        sinks = self.sinks.failure if failed else self.sinks.success
        if sinks:
            self.queue.put(sinks, lambda: self._final(rec, failed), call.order)

    def _lifespan(self, receive: Receive) -> Receive:
        async def shutdown_first() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.queue.aclose(self.shutdown_timeout)  # deliver what is queued before the exit
            return message

        return shutdown_first
