"""The SSE codec: server-sent events in, events with their exact bytes out.

``SSEDecoder.feed(chunk)`` returns the events completed by a network chunk. Lines
end only at CR, LF or CRLF (never at ``\\u2028`` or other Unicode breaks, which
live inside JSON strings); a CR at the end of a chunk waits for the next chunk in
case an LF follows. An event ends at an empty line. Every byte fed comes back in
exactly one event's ``raw``, in order, so a relay that passes events through
unchanged sends the stream byte for byte. ``data`` joins the ``data:`` lines
(one leading space dropped, as the spec says); ``json`` parses it once, on first
use, and every layer after that shares the result. Comments (``: ...``) and
keep-alives have no data. ``flush()`` returns what is left at the end of a stream.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import msgspec

from asgi_llm.types import Message

_EOL = re.compile(rb"\r\n|\r|\n")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_UNPARSED = object()


def is_sse(message: Message) -> bool:
    """Whether an ``http.response.start`` message starts an SSE answer."""
    for name, value in message.get("headers", ()):  # ASGI names are lower-case; any app's may not be
        if name == b"content-type" or (len(name) == 12 and name.lower() == b"content-type"):
            return bytes(value).startswith(b"text/event-stream")
    return False


class SSEEvent:
    """One event: its exact bytes, its fields, and its JSON parsed at most once."""

    __slots__ = ("_bytes", "_json", "event", "raw")

    def __init__(self, raw: bytes, data: bytes | None, event: str | None = None) -> None:
        self.raw = raw
        self._bytes = data  # the joined data lines, undecoded until someone asks
        self.event = event
        self._json: Any = _UNPARSED

    @classmethod
    def from_json(cls, payload: Any) -> SSEEvent:
        """A new ``data: <json>`` event (for hooks that replace or insert chunks)."""
        data = _encode(payload)
        event = cls(b"data: " + data + b"\n\n", data)
        event._json = payload
        return event

    @property
    def data(self) -> str | None:
        return self._bytes.decode("utf-8", "replace") if self._bytes is not None else None

    @property
    def is_done(self) -> bool:
        return self._bytes == b"[DONE]"

    @property
    def payload(self) -> bytes:
        """The data as bytes (empty when there is none)."""
        return self._bytes or b""

    def is_json(self) -> bool:
        """Whether ``data`` looks like a JSON object or array (checked without parsing)."""
        return self._bytes is not None and self._bytes[:1] in (b"{", b"[")

    @property
    def json(self) -> Any:
        """The parsed ``data``, or None (no data, ``[DONE]``, not JSON). Parsed once."""
        if self._json is _UNPARSED:
            self._json = None
            if self._bytes is not None and self._bytes != b"[DONE]":
                with contextlib.suppress(msgspec.DecodeError):  # not JSON: json stays None
                    self._json = _decode(self._bytes)
        return self._json

    def __repr__(self) -> str:
        return f"SSEEvent({self.raw!r})"


def _parse(lines: list[bytes]) -> tuple[bytes | None, str | None]:
    data: list[bytes] = []
    event = None
    for line in lines:
        if not line or line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return (b"\n".join(data) if data else None), event


def _one_line_data(part: bytes) -> bytes | None:
    """The data of an LF-only event body that is a single ``data:`` line (the usual case), else None."""
    if b"\n" not in part and part.startswith(b"data:"):
        value = part[5:]
        return value[1:] if value.startswith(b" ") else value
    return None


def _event(part: bytes, raw: bytes) -> SSEEvent:
    """An LF-only event body (no terminating blank line) to an event."""
    data = _one_line_data(part)
    if data is not None:
        return SSEEvent(raw, data)
    data, name = _parse(part.split(b"\n"))
    return SSEEvent(raw, data, name)


def whole_events(chunk: bytes) -> list[tuple[bytes, bytes]] | None:
    """``(raw, payload)`` of each event when ``chunk`` is whole LF-only events (the usual network
    read of an LLM stream), without event objects; None otherwise (use an ``SSEDecoder``)."""
    if not chunk.endswith(b"\n\n") or b"\r" in chunk:
        return None
    parts = chunk.split(b"\n\n")
    parts.pop()  # the empty rest after the last blank line
    n = len(parts)
    # Every event one "data: " line, checked by counting in C rather than per event: two LFs per
    # event, and each after the first starts with "data: ". (An LF inside an event would need a third.)
    if chunk.startswith(b"data: ") and chunk.count(b"\n") == 2 * n and chunk.count(b"\n\ndata: ") == n - 1:
        if n == 1:  # one event per read: the usual read of a paced stream
            return [(chunk, parts[0][6:])]
        return [(part + b"\n\n", part[6:]) for part in parts]
    pairs = []
    for part in parts:
        raw = part + b"\n\n"
        data = _one_line_data(part)  # else comments, named or multi-line events: the full parse
        pairs.append((raw, data if data is not None else _event(part, raw).payload))
    return pairs


def event_at(chunk: bytes, at: int) -> tuple[int, int, bytes] | None:
    """In a read of whole LF-only events, the event holding byte ``at``: where it starts, where it ends
    (after its blank line) and its data, when it is one ``data:`` line; else None. For a relay that
    looks at one event of a read (found by a byte search) without splitting the others."""
    if b"\r" in chunk:
        return None
    before = chunk.rfind(b"\n\n", 0, at)
    start = before + 2 if before >= 0 else 0
    end = chunk.find(b"\n\n", at) + 2
    if end < 2:
        return None
    data = _one_line_data(chunk[start:end - 2])
    return None if data is None else (start, end, data)


class SSEDecoder:
    """Incremental SSE parser; see the module docstring."""

    __slots__ = ("_buf", "_lf", "_line_start", "_lines", "_more", "_scan")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._buf = b""
        self._lines: list[bytes] = []  # complete lines of the event being read
        self._line_start = 0  # where the current line starts in _buf
        self._scan = 0  # where to look for the next line end
        self._lf = False  # _buf came from the LF-only path: no CR in it, nothing scanned
        self._more: list[bytes] = []  # reads after _buf that completed nothing (LF-only), joined once

    def _holds(self, chunk: bytes) -> bool:
        """Hold ``chunk`` when it only extends an unfinished LF-only event: a large event arriving in
        many reads is then joined and split once, not once per read (which was quadratic in its size).
        Streams with CR line ends still join per read: they are rare, and their events small."""
        if not (self._lf and self._buf) or b"\r" in chunk or b"\n\n" in chunk:
            return False
        last = self._more[-1] if self._more else self._buf
        if chunk[:1] == b"\n" and last[-1:] == b"\n":
            return False  # the blank line straddles the two reads
        self._more.append(chunk)
        return True

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished event are held."""
        return bool(self._buf)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._holds(chunk):
            return []
        if self._more:
            buf = b"".join([self._buf, *self._more, chunk])
            self._more = []
        else:
            buf = self._buf + chunk if self._buf else chunk
        if b"\r" not in buf:  # the usual stream: LF only, so events end exactly at "\n\n"
            *parts, rest = buf.split(b"\n\n")
            self._reset()
            self._buf, self._lf = rest, True
            return [_event(part, part + b"\n\n") for part in parts]
        self._lf = False
        events: list[SSEEvent] = []
        event_start = 0
        pos, line_start, lines = self._scan, self._line_start, self._lines
        while True:
            found = _EOL.search(buf, pos)
            if found is None or (found.group() == b"\r" and found.end() == len(buf)):
                break  # no line end yet, or a CR that may be the first half of CRLF
            line = buf[line_start:found.start()]
            pos = line_start = found.end()
            if line:
                lines.append(line)
                continue
            data, name = _parse(lines)  # an empty line: the event is complete
            events.append(SSEEvent(buf[event_start:pos], data, name))
            event_start, lines = pos, []
        self._buf = buf[event_start:]
        self._scan, self._line_start, self._lines = pos - event_start, line_start - event_start, lines
        return events

    def feed_pairs(self, chunk: bytes, last: bool = False) -> list[tuple[bytes, bytes]]:
        """``(raw, payload)`` of the events ``chunk`` completes (and, when ``last``, of the rest), for
        a relay that only needs each event's bytes and data. A read of whole LF-only events with
        nothing held (the usual read of an LLM stream) is split without event objects."""
        if not self._buf:
            pairs = whole_events(chunk)
            if pairs is not None:
                return pairs
        events = self.feed(chunk)
        if last:
            events += self.flush()
        return [(e.raw, e.payload) for e in events]

    def is_whole(self, chunk: bytes) -> bool:
        """Whether ``chunk`` ends on an event boundary with nothing held: it can pass as it is, unsplit."""
        return not self._buf and chunk.endswith(b"\n\n")

    def flush(self) -> list[SSEEvent]:
        """The unterminated rest of a stream, as one event (its raw bytes unchanged)."""
        if not self._buf:
            return []
        rest = b"".join([self._buf, *self._more]) if self._more else self._buf
        lines = [*self._lines, *_EOL.split(rest[self._line_start:])]
        data, name = _parse(lines)
        self._reset()
        return [SSEEvent(rest, data, name)]
