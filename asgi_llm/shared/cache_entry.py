"""Cached answers: how a complete answer is kept, and how it is served again.

An entry is a JSON answer's body, or a stream's chunk payloads (without ``[DONE]``).
It is served in the shape the new request asks for: a stream as a real SSE stream,
chunk by chunk; a stream to a non-streaming request as the response its chunks add
up to; a JSON answer to a streaming request as chunks (content, then the finish
reason, then usage when ``stream_options.include_usage`` asks).

Stored form: the 13 ASCII digits of the time it was stored (ms, for ``s-maxage``),
then the msgpack of ``Entry``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from asgi_llm.sse.assemble import assemble_stream
from asgi_llm.sse.codec import SSEDecoder
from asgi_llm.types import Send

_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class Entry(msgspec.Struct, array_like=True):
    stream: bool
    body: bytes = b""  # a JSON answer
    chunks: list[bytes] = msgspec.field(default_factory=list)  # a stream's chunk payloads


_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(Entry).decode


def pack(entry: Entry) -> bytes:
    """The entry without its stamp (Redis adds the server's)."""
    return _pack(entry)


def stamped(entry: bytes, now: float | None = None) -> bytes:
    """``entry`` behind the local time's stamp (for the in-memory store)."""
    return b"%013d" % int((time.time() if now is None else now) * 1000) + entry


def stored_at(stored: bytes) -> float:
    """When a stamped entry was stored, in seconds since the epoch (ValueError: not stamped)."""
    return int(stored[:13]) / 1000


def unpack(stored: bytes) -> tuple[float, Entry] | None:
    """(stored at, in seconds since the epoch; the entry), or None for bytes that are not an entry."""
    try:
        return stored_at(stored), _unpack(stored[13:])
    except (ValueError, msgspec.DecodeError):
        return None


def stream_entry(raw: bytes) -> Entry | None:
    """The entry of a complete served stream: every event JSON, ending with ``[DONE]``, no error event."""
    decoder = SSEDecoder()
    payloads = [payload for _, payload in decoder.feed_pairs(raw, last=True)]
    if not payloads or payloads[-1] != b"[DONE]":
        return None  # cut short: never stored
    chunks = payloads[:-1]
    for chunk in chunks:
        if not chunk.startswith(b"{") or chunk.startswith(b'{"error"'):
            return None
    return Entry(True, chunks=chunks)


def _usage_only(chunk: bytes) -> bool:
    return b'"choices":[]' in chunk and b'"usage"' in chunk


def _as_chunks(answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """A complete chat or text completion as the chunks of a stream."""
    text = answer.get("object") == "text_completion"
    base: dict[str, Any] = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint") if k in answer}
    base["object"] = "text_completion" if text else "chat.completion.chunk"
    out: list[bytes] = []
    for choice in answer.get("choices") or []:
        index = choice.get("index", 0)
        if text:
            first = {"index": index, "text": choice.get("text", ""), "logprobs": None, "finish_reason": None}
            last = {"index": index, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")}
        else:
            message = choice.get("message") or {}
            delta = {"role": message.get("role", "assistant"), "content": message.get("content")}
            calls = message.get("tool_calls")
            if calls:
                delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(calls)]
            first = {"index": index, "delta": delta, "finish_reason": None}
            last = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        out += (_encode({**base, "choices": [first]}), _encode({**base, "choices": [last]}))
    if include_usage and answer.get("usage"):
        out.append(_encode({**base, "choices": [], "usage": answer["usage"]}))
    return out


async def serve(entry: Entry, stream: bool, include_usage: bool, headers: list[tuple[bytes, bytes]],
                send: Send) -> None:
    """Answer from ``entry`` in the shape the request asks for (see the module docstring)."""
    if not stream:
        if entry.stream:
            raw = b"".join(b"data: " + c + b"\n\n" for c in entry.chunks)
            body = _encode(assemble_stream(raw))
        else:
            body = entry.body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON, (b"content-length", b"%d" % len(body)), *headers]})
        await send({"type": "http.response.body", "body": body})
        return
    if entry.stream:
        chunks = entry.chunks if include_usage else [c for c in entry.chunks if not _usage_only(c)]
    else:
        chunks = _as_chunks(msgspec.json.decode(entry.body), include_usage)
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *headers]})
    for chunk in chunks:
        await send({"type": "http.response.body", "body": b"data: " + chunk + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
