"""``UsageTap``: a relayed stream's usage chunk, read (and taken out when not asked for) as it passes.

``traced_send`` puts one in front of an in-process answer (the mock's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from asgi_llm.sse.codec import SSEDecoder, is_sse
from asgi_llm.types import Message, Send

if TYPE_CHECKING:
    from asgi_llm.upstream.trace import UpstreamTrace


class _UsageEvent(msgspec.Struct):
    usage: Any = None
    choices: Any = None


_usage_event = msgspec.json.Decoder(_UsageEvent).decode


def _usage_at(chunk: bytes, start: int) -> int:
    """Where the first ``"usage"`` key not followed by ``:null`` is, from ``start``; -1 if none.
    One pass of ``bytes.find`` (a regex or a second count would scan the chunk again)."""
    at = chunk.find(b'"usage"', start)
    while at >= 0 and chunk.startswith(b'"usage":null', at):
        at = chunk.find(b'"usage"', at + 12)
    return at


class UsageTap:
    """Reads a relayed SSE stream for its usage chunk, and removes it when ``trace.strip_usage``.

    Only events whose data holds a ``"usage": {`` object are parsed; a network chunk of
    whole events without one passes as is. Everything passes as its exact bytes; a
    chunk that completes no event yields nothing until the event is whole. With
    ``trace.keep_raw`` the upstream's bytes are kept as ``trace.raw``.
    """

    __slots__ = ("decoder", "kept", "pending", "trace")

    def __init__(self, trace: UpstreamTrace) -> None:
        self.trace = trace
        self.decoder = SSEDecoder()
        self.pending = False  # the decoder holds part of an event
        self.kept: list[bytes] | None = [] if trace.keep_raw else None

    def feed(self, chunk: bytes) -> bytes:
        if self.kept is not None:
            self.kept.append(chunk)
        if not self.pending and chunk.endswith(b"\n\n"):  # whole events: one scan, parse at most one
            at = chunk.find(b'"usage"')  # the scan goes on from here: no second pass over the text
            if at >= 0 and chunk.startswith(b'"usage":null', at):
                at = _usage_at(chunk, at + 12)
            if at < 0:
                return chunk  # no usage object (OpenAI sends "usage":null in every chunk): passed unparsed
            if b"\r" not in chunk:
                kept = self._one_event(chunk, at)
                if kept is not None:
                    return kept
        out = self._keep(self.decoder.feed(chunk))
        self.pending = self.decoder.pending
        return out

    def _one_event(self, chunk: bytes, at: int) -> bytes | None:
        """The event around ``at`` parsed alone, if it is one ``data:`` line with the only usage object."""
        before = chunk.rfind(b"\n\n", 0, at)
        start = before + 2 if before >= 0 else 0
        end = chunk.find(b"\n\n", at) + 2
        event = chunk[start:end - 2]
        if not event.startswith(b"data: ") or b"\n" in event or _usage_at(chunk, end) >= 0:
            return None
        try:
            parsed = _usage_event(event[6:])
        except msgspec.DecodeError:
            return None
        if not isinstance(parsed.usage, dict):
            return None
        self.trace.usage = parsed.usage
        if self.trace.strip_usage and not parsed.choices:
            return chunk[:start] + chunk[end:]  # the usage-only chunk the client never asked for
        return chunk

    def flush(self) -> bytes:
        self.pending = False
        if self.kept is not None:
            self.trace.raw = b"".join(self.kept)
        return self._keep(self.decoder.flush())

    def _keep(self, events: list[Any]) -> bytes:
        kept: list[bytes] = []
        for event in events:
            if event.is_json() and _usage_at(event.payload, 0) >= 0:
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
