"""A client that leaves cancels the upstream call; pooled connections do not leak;
a slow reader slows the upstream instead of filling memory."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from tests.conftest import make_config
from tests.servers import Recorder


def _raw_request(base: str, body: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def _read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    seen = b""
    while marker not in seen:
        chunk = sock.recv(65536)
        assert chunk and len(seen) < limit, f"no {marker!r} in {seen[:200]!r}"
        seen += chunk
    return seen


def _wait_closed(recorder: Recorder, model: str, since: float, limit: float = 3.0) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for name, at in recorder.closed:
            if name == model:
                return at - since
        time.sleep(0.02)
    raise AssertionError(f"upstream never saw the close of {model}")


def test_leaving_a_stream_closes_the_upstream_request(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    sock = _raw_request(gateway, b'{"model":"slow-stream","stream":true,"messages":[{"role":"user","content":"x"}]}')
    try:
        _read_until(sock, b"data: ")  # the stream is flowing
    finally:
        left = time.monotonic()
        sock.close()
    assert _wait_closed(recorder, "slow-stream", left) < 1.0


def test_leaving_while_waiting_closes_the_upstream_request(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    sock = _raw_request(gateway, b'{"model":"slow","messages":[{"role":"user","content":"x"}]}')
    try:
        deadline = time.monotonic() + 3
        while not recorder.attempts["slow"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        left = time.monotonic()
        sock.close()
    assert _wait_closed(recorder, "slow", left) < 1.0


def test_leaving_while_a_transcription_is_pending_closes_it(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    boundary = b"b0undary"
    form = (b"--b0undary\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nslow-whisper\r\n"
            b"--b0undary\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            b"content-type: audio/wav\r\n\r\n" + b"\x00\x01" * 50_000 + b"\r\n--b0undary--\r\n")
    host, port = gateway.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    try:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; "
                     b"boundary=" + boundary + b"\r\ncontent-length: %d\r\n\r\n" % len(form) + form)
        deadline = time.monotonic() + 3
        while not recorder.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.requests and recorder.requests[-1]["raw"] == form  # the upload arrived intact
    finally:
        left = time.monotonic()
        sock.close()
    assert _wait_closed(recorder, "slow-whisper", left) < 1.0


def test_no_pooled_connection_leaks(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    _, url = upstream
    config = make_config(url, upstream={"max_connections": 2})
    base = gateway_factory(config)
    for _ in range(6):  # more abandoned calls than the pool has connections
        sock = _raw_request(base, b'{"model":"slow-stream","stream":true,"messages":[{"role":"user","content":"x"}]}')
        _read_until(sock, b"data: ")
        sock.close()
    for _ in range(4):
        resp = httpx.post(base + "/v1/chat/completions", timeout=5,
                          json={"model": "echo", "messages": [{"role": "user", "content": "still there?"}]})
        assert resp.status_code == 200


def test_slow_reader_slows_the_upstream(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    sock = _raw_request(gateway, b'{"model":"firehose","stream":true,"messages":[{"role":"user","content":"x"}]}')
    try:
        _read_until(sock, b"\r\n\r\n")
        time.sleep(1.0)  # read nothing: unheld, the firehose would push hundreds of MiB in this time
        held = recorder.firehose_sent
        time.sleep(0.5)
        # What is in flight is bounded by socket buffers (kernel, a few MiB), not by the stream's size.
        assert held < 16 * 1024 * 1024, f"upstream pushed {held} bytes to a reader that read nothing"
        assert recorder.firehose_sent - held < 1024 * 1024  # and it stays held back
        received = 0
        deadline = time.monotonic() + 10
        while recorder.firehose_sent <= held and time.monotonic() < deadline:  # reading lets it flow again
            received += len(sock.recv(1 << 20))
        assert recorder.firehose_sent > held, f"upstream stayed at {held} bytes after {received} were read"
    finally:
        sock.close()
