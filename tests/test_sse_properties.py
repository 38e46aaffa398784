"""Property tests for the SSE codec: real-shaped streams, split anywhere, come back
byte for byte, event by event, with their data intact (\\u2028 included)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_llm.sse.codec import SSEDecoder, SSEEvent, whole_events

EOLS = st.sampled_from(["\n", "\r", "\r\n"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)  # includes \u2028, \x85


@st.composite
def events(draw: Any, eols: st.SearchStrategy[str] = EOLS) -> tuple[str, str | None]:
    """One event as text, and the data a reader must see (None: no data)."""
    eol = draw(eols)
    kind = draw(st.sampled_from(["json", "multiline", "comment", "done", "named"]))
    if kind == "json":
        payload = {"choices": [{"delta": {"content": draw(TEXT)}}], "n": draw(st.integers())}
        data = json.dumps(payload, ensure_ascii=False)  # raw \u2028 etc. inside the string
        return f"data: {data}{eol}{eol}", data
    if kind == "multiline":
        parts = draw(st.lists(st.text(alphabet="abc xyz{}\"", max_size=8), min_size=1, max_size=3))
        return "".join(f"data: {p}{eol}" for p in parts) + eol, "\n".join(parts)
    if kind == "comment":
        return f": keep-alive {draw(st.text(alphabet='abc ', max_size=5))}{eol}{eol}", None
    if kind == "named":
        return f"event: ping{eol}data:{'x'}{eol}{eol}", "x"
    return f"data: [DONE]{eol}{eol}", "[DONE]"


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(events(), min_size=1, max_size=8), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_any_split_gives_back_every_byte_and_event(stream: list[tuple[str, str | None]], cuts: list[int]) -> None:
    raw = "".join(text for text, _ in stream).encode()
    points = sorted({c % (len(raw) + 1) for c in cuts})
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    for a, b in zip([0, *points], [*points, len(raw)], strict=True):
        out += decoder.feed(raw[a:b])
    out += decoder.flush()
    assert b"".join(e.raw for e in out) == raw  # nothing lost, nothing altered, nothing glued
    assert [e.raw for e in out] == [text.encode() for text, _ in stream]
    assert [e.data for e in out] == [data for _, data in stream]
    for event, (_, data) in zip(out, stream, strict=True):
        try:
            expected = json.loads(data) if data is not None and data != "[DONE]" else None
        except ValueError:
            expected = None  # not JSON: `json` reads as None
        assert event.json == expected


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(events(st.just("\n")), min_size=1, max_size=6), size=st.integers(1, 7),
       last=st.booleans())
def test_lf_streams_read_a_few_bytes_at_a_time(stream: list[tuple[str, str | None]], size: int, last: bool) -> None:
    """LF-only streams in small reads: reads that only extend an event are held and joined once, and
    the blank line may straddle two reads; the events come out whole and in order all the same."""
    raw = "".join(text for text, _ in stream).encode()
    if last:  # the stream ends inside its last event: flush hands back the held reads
        raw = raw[:-1]
    decoder = SSEDecoder()
    out = [event for at in range(0, len(raw), size) for event in decoder.feed(raw[at:at + size])]
    assert decoder.pending == (last or not raw.endswith(b"\n\n"))
    out += decoder.flush()
    assert b"".join(e.raw for e in out) == raw
    expected = [text.encode() for text, _ in stream]
    assert [e.raw for e in out] == ([*expected[:-1], expected[-1][:-1]] if last else expected)
    assert [e.data for e in out][:len(stream) - last] == [data for _, data in stream][:len(stream) - last]


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(events(), min_size=1, max_size=8), cut=st.integers(0, 5000))
def test_whole_events_agrees_with_the_decoder(stream: list[tuple[str, str | None]], cut: int) -> None:
    """The shortcut for whole LF-only reads gives each event's exact bytes and payload, as the
    decoder does, and declines anything else (a CR anywhere, a cut inside an event)."""
    raw = "".join(text for text, _ in stream).encode()
    chunk = raw[:cut % (len(raw) + 1)]
    pairs = whole_events(chunk)
    decoded = SSEDecoder().feed(chunk)
    if b"\r" in chunk or not chunk.endswith(b"\n\n"):
        assert pairs is None
        return
    assert pairs == [(e.raw, e.payload) for e in decoded]
    assert b"".join(r for r, _ in pairs) == chunk


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(events(st.just("\n")), min_size=1, max_size=8))
def test_whole_lf_reads_split_as_the_decoder_does(stream: list[tuple[str, str | None]]) -> None:
    """Whole LF-only reads, the usual ones (all one-line ``data:`` events: counted in one pass;
    any other event among them: split one by one), give the decoder's bytes and payloads."""
    chunk = "".join(text for text, _ in stream).encode()
    pairs = whole_events(chunk)
    assert pairs is not None
    assert pairs == [(e.raw, e.payload) for e in SSEDecoder().feed(chunk)]
    assert [p.decode() for _, p in pairs] == [data or "" for _, data in stream]


def test_json_is_parsed_once_and_shared() -> None:
    (event,) = SSEDecoder().feed(b'data: {"a": 1}\n\n')
    assert event.json is event.json and event.json == {"a": 1}
    done, comment = SSEDecoder().feed(b"data: [DONE]\n\n: ping\n\n")
    assert done.is_done and done.json is None and comment.data is None


def test_cr_at_chunk_end_waits_for_a_possible_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\n\r") == []
    (event,) = decoder.feed(b"\ndata: b")
    assert event.raw == b"data: a\r\n\r\n" and event.data == "a"
    (rest,) = decoder.flush()
    assert rest.raw == b"data: b" and rest.data == "b"


def test_from_json_makes_a_complete_event() -> None:
    event = SSEEvent.from_json({"x": "\u2028"})
    (again,) = SSEDecoder().feed(event.raw)
    assert again.json == {"x": "\u2028"} and event.raw.endswith(b"\n\n")


def test_flush_parses_an_unterminated_multi_line_tail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\ndata: b\n") == []
    (rest,) = decoder.flush()
    assert rest.raw == b"data: a\ndata: b\n" and rest.data == "a\nb"


def _split_in_reads(size: int) -> float:
    """Seconds to decode one event of ``size`` bytes arriving in 4 KB reads."""
    import time

    event = b'data: {"b64": "' + b"A" * size + b'"}\n\n'
    decoder = SSEDecoder()
    began = time.perf_counter()
    out = [e for at in range(0, len(event), 4096) for e in decoder.feed(event[at:at + 4096])]
    took = time.perf_counter() - began
    assert [e.raw for e in out] == [event]
    return took


def test_a_large_event_in_many_reads_costs_its_size_not_its_square() -> None:
    """A 4 MB event (a streamed image, say) in 4 KB reads: ten times the size, about ten times the
    time. Joining and splitting the held bytes on every read took 2.4 s for it (11 ms for 0.4 MB)."""
    small = min(_split_in_reads(400_000) for _ in range(3))
    assert _split_in_reads(4_000_000) < 40 * small
