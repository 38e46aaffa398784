"""``AnthropicStream``: Anthropic's Messages SSE events, as they arrive, into OpenAI chunks.

``message_start`` gives the id, the model and the input usage (a first chunk carries
the assistant role); ``content_block_start`` of a ``tool_use`` block opens a tool call
(its id and name); ``content_block_delta`` carries text (``text_delta``) or a tool
call's arguments (``input_json_delta``); ``message_delta`` carries ``stop_reason`` (the
chunk with ``finish_reason``) and the output usage; ``message_stop`` ends the stream:
the usage chunk when asked (``include_usage``), then ``data: [DONE]``. ``ping`` and
block stops say nothing; an ``error`` event is raised as the started stream's error.
Events are parsed as whole events whatever the byte boundaries, so any split of the
same stream gives the same chunks. Anthropic's events are ``event:`` and one ``data:``
line each, LF-terminated: those are split here in one pass (the general ``SSEDecoder``
walks every line, ~3x the cost); a stream with CR line ends, or an event with several
``data:`` lines, goes through ``SSEDecoder``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from asgi_llm.request.errors import GatewayError
from asgi_llm.sse.codec import SSEDecoder

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "pause_turn": "stop", "refusal": "content_filter"}
_encode = msgspec.json.Encoder().encode
_TEXT_END = b'},"finish_reason":null}]}\n\n'


class _Delta(msgspec.Struct):
    type: str = ""
    text: str = ""
    partial_json: str = ""
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    """The fields of an event this translation reads (others are skipped by the decoder, unparsed)."""

    type: str = ""
    index: int = 0
    delta: _Delta | None = None
    message: dict[str, Any] | None = None
    content_block: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


_event = msgspec.json.Decoder(_Event).decode


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage as OpenAI's: prompt tokens include the cache's, which are also shown apart."""
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if read or written:
        out["prompt_tokens_details"] = {"cached_tokens": read}
        out["cache_read_input_tokens"] = read
        out["cache_creation_input_tokens"] = written
    return out


class AnthropicStream:
    """See the module docstring. ``on_usage`` gets the final OpenAI usage (the trace's)."""

    def __init__(self, model: str, include_usage: bool, on_usage: Any = None, created: int | None = None) -> None:
        self.decoder = SSEDecoder()
        self._buf = b""
        self._general = False  # CR line ends seen: the general decoder from then on
        self.model = model
        self.include_usage = include_usage
        self.on_usage = on_usage
        self.created = created if created is not None else int(time.time())
        self.id = "chatcmpl-anthropic"
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self.done = False
        self._text = self._prefix()  # a text delta's chunk is this, the text as JSON, then _TEXT_END

    def feed(self, chunk: bytes) -> bytes:
        if not self._general:
            buf = self._buf + chunk if self._buf else chunk
            if b"\r" not in buf:
                blocks = buf.split(b"\n\n")
                self._buf = blocks.pop()
                if len(blocks) == 1:  # the usual read: one event
                    return self._block(blocks[0])
                return b"".join([self._block(block) for block in blocks])
            self._general, chunk, self._buf = True, buf, b""
        return b"".join([self._event(payload) for _, payload in self.decoder.feed_pairs(chunk)])

    def _block(self, block: bytes) -> bytes:
        """One LF-only event's data (its one ``data:`` line), translated."""
        at = block.find(b"data:")
        if at < 0:
            return b""
        if block.find(b"\ndata:", at) >= 0:  # several data lines: joined as the SSE rules say
            return b"".join([self._event(p) for _, p in SSEDecoder().feed_pairs(block + b"\n\n", last=True)])
        end = block.find(b"\n", at)
        payload = block[at + 5:end] if end >= 0 else block[at + 5:]
        return self._event(payload[1:] if payload.startswith(b" ") else payload)

    def flush(self) -> bytes:
        if self._general:
            out = b"".join([self._event(payload) for _, payload in self.decoder.feed_pairs(b"", last=True)])
        else:
            out, self._buf = self._block(self._buf) if self._buf.strip() else b"", b""
        if not self.done:
            raise GatewayError(502, f"Upstream for model {self.model!r} ended its stream before message_stop.",
                               code="upstream_unavailable")
        return out

    def _head(self) -> dict[str, Any]:
        """The fields every chunk of this stream starts with."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _prefix(self) -> bytes:
        return b"data: " + _encode(self._head())[:-1] + b',"choices":[{"index":0,"delta":{"content":'

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        event = {**self._head(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + _encode(event) + b"\n\n"

    def _event(self, payload: bytes) -> bytes:
        if not payload.startswith(b"{"):
            return b""
        event = _event(payload)
        kind = event.type
        delta = event.delta
        if kind == "content_block_delta" and delta is not None:  # most events: one per token or so
            if delta.type == "text_delta":
                return self._text + _encode(delta.text) + _TEXT_END
            if delta.type == "input_json_delta" and event.index in self.tools:
                call = {"index": self.tools[event.index], "function": {"arguments": delta.partial_json}}
                return self._chunk({"tool_calls": [call]})
            return b""
        if kind == "message_start":
            message = event.message or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
            self._text = self._prefix()
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.content_block or {}
            if block.get("type") != "tool_use":
                return b""
            index = self.tools[event.index] = len(self.tools)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return self._chunk({"tool_calls": [call]})
        if kind == "message_delta":
            self.usage.update(event.usage or {})
            reason = delta.stop_reason if delta is not None else None
            return self._chunk({}, STOP_REASONS.get(reason, "stop") if reason else None)
        if kind == "message_stop":
            self.done = True
            usage = openai_usage(self.usage)
            if self.on_usage is not None:
                self.on_usage(usage)
            out = b""
            if self.include_usage:
                out = b"data: " + _encode({**self._head(), "choices": [], "usage": usage}) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        if kind == "error":
            error = event.error or {}
            status = 503 if error.get("type") == "overloaded_error" else 502
            raise GatewayError(status, str(error.get("message") or "Anthropic stream error"),
                               type=error.get("type") if isinstance(error.get("type"), str) else None,
                               code=error.get("type"))
        return b""  # ping, content_block_stop, anything new
