"""``UsageTap``: a relayed stream's usage chunk, read (and taken out when not asked for) as it passes.

``traced_send`` puts one in front of an in-process answer (the mock's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from asgi_llm.sse.codec import SSEDecoder, event_at, is_sse
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

    A read of whole events without a ``"usage": {`` object (OpenAI sends ``"usage":null``
    in every chunk when asked) passes as it is, after one scan; otherwise the codec
    splits it into events and only the events holding a usage object are parsed.
    Everything passes as its exact bytes; a read that completes no event yields
    nothing until the event is whole. With ``trace.keep_raw`` the upstream's bytes are
    kept as ``trace.raw``.
    """

    __slots__ = ("decoder", "kept", "trace")

    def __init__(self, trace: UpstreamTrace) -> None:
        self.trace = trace
        self.decoder = SSEDecoder()
        self.kept: list[bytes] | None = [] if trace.keep_raw else None

    def feed(self, chunk: bytes) -> bytes:
        if self.kept is not None:
            self.kept.append(chunk)
        if self.decoder.is_whole(chunk):
            at = _usage_at(chunk, 0)
            if at < 0:
                return chunk  # the usual read: no usage object, nothing to parse
            found = event_at(chunk, at)
            if found is not None and _usage_at(chunk, found[1]) < 0:  # the read's one usage object: only
                start, end, payload = found  # its event is looked at (an upstream may send a stream in one read)
                return chunk if self._keeps(payload) else chunk[:start] + chunk[end:]
        return b"".join(raw for raw, payload in self.decoder.feed_pairs(chunk) if self._keeps(payload))

    def flush(self) -> bytes:
        if self.kept is not None:
            self.trace.raw = b"".join(self.kept)
        return b"".join(raw for raw, payload in self.decoder.feed_pairs(b"", last=True) if self._keeps(payload))

    def _keeps(self, payload: bytes) -> bool:
        """Note the usage an event carries; False for the usage-only chunk the client never asked for."""
        if payload[:1] != b"{" or _usage_at(payload, 0) < 0:
            return True
        try:
            found = _usage_event(payload)
        except msgspec.DecodeError:
            return True
        if not isinstance(found.usage, dict):
            return True
        self.trace.usage = found.usage
        return not (self.trace.strip_usage and not found.choices)


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
