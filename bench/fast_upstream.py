"""A fast canned OpenAI-compatible upstream for benchmarks.

A raw asyncio protocol on uvloop: HTTP/1.1 keep-alive, ``content-length`` request
bodies only. Every POST gets a fixed ``chat.completion``; a body asking for
``"stream": true`` gets a fixed SSE stream of ``--chunks`` chunks, ending with a
usage chunk when it asks for ``stream_options.include_usage``. It does the
least work a server can so the benchmark measures the proxies, not the upstream.
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


class _Protocol(asyncio.Protocol):
    def __init__(self, plain: bytes, stream: bytes, usage_stream: bytes) -> None:
        self.buf = b""
        self.plain = plain
        self.stream = stream
        self.usage_stream = usage_stream

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
        server = await loop.create_server(lambda: _Protocol(plain, stream, usage_stream), "127.0.0.1", args.port,
                                          backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
