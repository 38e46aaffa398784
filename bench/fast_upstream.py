"""A fast canned OpenAI-compatible upstream for benchmarks.

A raw asyncio protocol on uvloop: HTTP/1.1 keep-alive, ``content-length`` request
bodies only. Every POST gets a fixed ``chat.completion``; a body asking for
``"stream": true`` gets a fixed SSE stream of ``--chunks`` chunks, ending with a
usage chunk when it asks for ``stream_options.include_usage``. ``POST /v1/messages``
answers as Anthropic's Messages API (a message, or its event stream with as many text
deltas). It does the least work a server can so the benchmark measures the proxies,
not the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fast upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    },
    separators=(",", ":"),
).encode()


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _stream_body(chunks: int, usage: bool = False) -> bytes:
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": f"word{i} "}) for i in range(chunks)]
    parts += [_chunk({}, "stop")]
    if usage:  # asked with stream_options.include_usage, as OpenAI and vLLM answer it
        final = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "bench-model", "choices": [],
                 "usage": {"prompt_tokens": 9, "completion_tokens": chunks * 2, "total_tokens": 9 + chunks * 2}}
        parts.append(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n")
    parts += [b"data: [DONE]\n\n"]
    out = b""
    for part in parts:  # one HTTP chunk per SSE event, as real servers send them
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def _anthropic(chunks: int) -> tuple[bytes, bytes]:
    """Anthropic's answer to a Messages call: the whole message, and its event stream (HTTP chunks)."""
    def event(kind: str, data: dict[str, object]) -> bytes:
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps(data, separators=(",", ":")).encode())

    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench-model",
               "content": [{"type": "text", "text": "Hello from the fast upstream."}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 6}}
    whole = json.dumps(message, separators=(",", ":")).encode()
    parts = [event("message_start", {"type": "message_start", "message": {**message, "content": [],
                                                                          "stop_reason": None}}),
             event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})]
    parts += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": f"word{i} "}})
              for i in range(chunks)]
    parts += [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
              event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                      "usage": {"output_tokens": chunks * 2}}),
              event("message_stop", {"type": "message_stop"})]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    plain = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(whole), whole)
    return plain, b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + body


class _Protocol(asyncio.Protocol):
    def __init__(self, plain: bytes, stream: bytes, usage_stream: bytes, anthropic: tuple[bytes, bytes]) -> None:
        self.buf = b""
        self.plain = plain
        self.stream = stream
        self.usage_stream = usage_stream
        self.anthropic = anthropic

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            compact = body.replace(b" ", b"")
            if head.startswith(b"post /v1/messages"):
                self.transport.write(self.anthropic[b'"stream":true' in compact])  # type: ignore[attr-defined]
                continue
            if b'"stream":true' not in compact:
                answer = self.plain
            else:
                answer = self.usage_stream if b'"include_usage":true' in compact else self.stream
            self.transport.write(answer)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    plain = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(_COMPLETION), _COMPLETION)
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    stream, usage_stream = head + _stream_body(args.chunks), head + _stream_body(args.chunks, usage=True)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        anthropic = _anthropic(args.chunks)
        server = await loop.create_server(lambda: _Protocol(plain, stream, usage_stream, anthropic), "127.0.0.1",
                                          args.port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
