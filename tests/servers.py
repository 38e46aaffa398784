"""Real servers for tests: uvicorn in a thread on a port picked at run time, a
recording OpenAI-compatible upstream, and raw TCP servers for broken replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn

from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread (lifespan included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="auto", loop="auto", http="httptools",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


async def read_request(receive: Receive) -> bytes:
    """A test server's whole request body."""
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """A test server's lifespan: every step completes."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                break


def completion(model: str, content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def chunk(model: str, content: str, usage: bool = False) -> bytes:
    event: dict[str, Any] = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
                             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    if usage:  # with stream_options.include_usage, OpenAI sends "usage": null in every chunk
        event["usage"] = None
    return b"data: " + json.dumps(event).encode() + b"\n\n"


STREAM_USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


class CountsActive:
    """An upstream's requests being answered now (``active``) and the most at once (``most_active``)."""

    active = 0
    most_active = 0

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            yield
        finally:
            self.active -= 1


class Recorder(CountsActive):
    """An OpenAI-compatible upstream that records what it got; behaviour by upstream model name.

    ``echo`` (default) answers with the last user message; ``slow`` waits 5 s;
    ``slow-stream`` streams a chunk every 50 ms for 10 s; ``flaky`` answers 503
    ``fail_first`` times; ``busy`` answers 429 with Retry-After; ``bad-request``
    a 400 OpenAI error; an upload for ``slow-whisper`` waits 5 s; ``text-500`` a plain-text
    500; ``not-json`` garbage JSON;
    ``cut-stream`` streams two chunks then breaks; ``one-read`` sends a whole stream in one write;
    ``firehose`` streams 64 KiB chunks as fast as the reader allows; ``no-usage`` never reports usage. Other streams
    send usage (``STREAM_USAGE``) when asked with ``stream_options.include_usage``. ``closed`` collects the models whose
    requests saw the client (the gateway) go away, with the time.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()
        self.closed: list[tuple[str, float]] = []
        self.fail_first = 2
        self.firehose_sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(scope, receive, send)
            return
        raw = await read_request(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw and headers.get("content-type", "").startswith("application/json") else None
        except ValueError:
            body = None
        self.requests.append({"path": scope["path"], "headers": headers, "raw": raw, "body": body})
        model = body.get("model", "echo") if isinstance(body, dict) else "upload"
        self.attempts[model] += 1
        with self.answering():
            await self.answer(scope, model, body, raw, receive, send)

    async def answer(self, scope: Scope, model: str, body: Any, raw: bytes, receive: Receive, send: Send) -> None:
        if scope["path"].endswith(("/images/generations", "/moderations", "/responses")):
            return await self.json(send, 200, {"object": "echoed", "path": scope["path"], "received": body})
        if scope["path"].endswith("/v1/completions"):
            return await self.json(send, 200, {"id": "cmpl-up", "object": "text_completion", "created": 1,
                                               "model": model, "choices": [{"index": 0, "text": "upstream text",
                                                                           "logprobs": None, "finish_reason": "stop"}]})
        if scope["path"].endswith("/embeddings"):
            vectors = [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}]
            return await self.json(send, 200, {"object": "list", "model": model, "data": vectors,
                                               "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        await self.behave(model, body, raw, receive, send)

    async def watch(self, model: str, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.closed.append((model, time.monotonic()))

    async def behave(self, model: str, body: Any, raw: bytes, receive: Receive, send: Send) -> None:
        stream = isinstance(body, dict) and body.get("stream") is True
        if model == "slow":
            watcher = asyncio.ensure_future(self.watch(model, receive))
            await asyncio.sleep(5)
            watcher.cancel()
        if model.startswith("delay-"):  # answers (or starts streaming) after <ms> milliseconds
            watcher = asyncio.ensure_future(self.watch(model, receive))
            await asyncio.sleep(int(model.removeprefix("delay-")) / 1000)
            watcher.cancel()
        if model == "flaky" and self.attempts[model] <= self.fail_first:
            return await self.json(send, 503, {"error": {"message": "overloaded", "type": "server_error"}})
        if model == "busy" and self.attempts[model] == 1:
            return await self.json(send, 429, {"error": {"message": "slow down", "type": "rate_limit_error"}},
                                   [(b"retry-after", b"0.3")])
        if model == "bad-request":
            return await self.json(send, 400, {"error": {"message": "bad things", "type": "invalid_request_error",
                                                         "param": "temperature", "code": None}})
        if model == "text-500":
            return await self.raw(send, 500, b"text/plain", b"kaboom")
        if model == "not-json":
            return await self.raw(send, 200, b"application/json", b"{not json")
        if model == "upload" and b"slow-whisper" in raw:
            watcher = asyncio.ensure_future(self.watch("slow-whisper", receive))
            await asyncio.sleep(5)
            watcher.cancel()
        if model == "upload":
            return await self.json(send, 200, {"text": f"{len(raw)} bytes"})
        if stream:
            return await self.stream(model, body, receive, send)
        messages = body.get("messages", []) if isinstance(body, dict) else []
        said = messages[-1].get("content", "") if messages else ""
        answer = completion(model, f"echo: {said}")
        if model == "no-usage":  # an upstream that reports no usage: the gateway estimates
            del answer["usage"]
        await self.json(send, 200, answer, [(b"x-upstream", b"yes"),
                                                                        (b"keep-alive", b"timeout=5"),
                                                                        (b"proxy-authenticate", b"Basic")])

    async def stream(self, model: str, body: Any, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"x-upstream", b"yes")]})
        if model in ("slow-stream", "firehose"):
            watcher = asyncio.ensure_future(self.watch(model, receive))
            payload = b": " + b"x" * 65536 + b"\n\n"
            for i in range(200 if model == "slow-stream" else 4000):
                if watcher.done():
                    return
                if model == "firehose":
                    await send({"type": "http.response.body", "body": payload, "more_body": True})
                    self.firehose_sent += len(payload)
                else:
                    await send({"type": "http.response.body", "body": chunk(model, f"w{i} "), "more_body": True})
                await asyncio.sleep(0.05 if model == "slow-stream" else 0)
            watcher.cancel()
        elif model == "split-secret":  # a banned word split across chunks, and a keep-alive comment
            for piece in ("The pass", "word is sword", "fi", "sh. Bye"):
                await send({"type": "http.response.body", "body": chunk(model, piece), "more_body": True})
                if piece == "fi":
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        elif model == "one-read":  # every event in one network write: the client's first read holds them all
            events = b"".join(chunk(model, word) for word in ("one ", "two ", "three")) + b"data: [DONE]\n\n"
            await send({"type": "http.response.body", "body": events, "more_body": True})
        elif model == "stall-stream":  # two chunks, then silence until the gateway gives up on it
            watcher = asyncio.ensure_future(self.watch(model, receive))
            for word in ("Hello", " then"):
                await send({"type": "http.response.body", "body": chunk(model, word), "more_body": True})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher), 5)
            return
        elif model == "cut-stream":
            cut = chunk(model, "one ") + b"data: {\"trunc"
            await send({"type": "http.response.body", "body": cut, "more_body": True})
            raise RuntimeError("upstream dies mid-stream")  # uvicorn drops the connection
        else:
            options = body.get("stream_options") if isinstance(body, dict) else None
            usage = isinstance(options, dict) and options.get("include_usage") is True and model != "no-usage"
            for word in ("Hello", " from", " upstream"):
                await send({"type": "http.response.body", "body": chunk(model, word, usage), "more_body": True})
            if usage:
                final = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": [], "usage": STREAM_USAGE}
                await send({"type": "http.response.body", "body": b"data: " + json.dumps(final).encode() + b"\n\n",
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def json(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        data = json.dumps(payload).encode()
        await Recorder.raw(send, status, b"application/json", data, extra)

    @staticmethod
    async def raw(send: Send, status: int, media: bytes, data: bytes,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
        message: Message = {"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", media), *(extra or [])]}
        await send(message)
        await send({"type": "http.response.body", "body": data})


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with fixed bytes, then closes."""

    def __init__(self, reply: bytes, delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.sock = free_socket()
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    time.sleep(self.delay)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class CLIServer:
    """``asgi-llm --config FILE`` in a subprocess on a port picked now; ``url`` once it answers."""

    def __init__(self, config: str, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "asgi_llm", "--config", config, "--port", str(self.port),
                   "--log-level", "warning", *args]
        self.proc = subprocess.Popen(command, env={**os.environ, **(env or {})})

    def __enter__(self) -> CLIServer:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asgi-llm exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("asgi-llm did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        finally:
            self.proc.kill()


class Switchable(CountsActive):
    """An OpenAI-compatible upstream whose behaviour a test switches: ``ok`` (after ``delay``), ``status``
    (``status`` with the OpenAI error ``error``), ``hang``, ``cut`` (a stream that dies after one chunk).
    Answers say which server they came from; ``calls`` counts chat calls, ``probes`` GET /models."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.status = 500
        self.error: dict[str, Any] = {"message": "server broke", "type": "server_error", "code": None}
        self.delay = 0.0
        self.calls = 0
        self.probes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(scope, receive, send)
            return
        raw = await read_request(receive)
        if scope["method"] == "GET":
            self.probes += 1
            ok = self.mode != "status"
            await Recorder.json(send, 200 if ok else self.status, {"object": "list", "data": []} if ok else
                                {"error": self.error})
            return
        body = json.loads(raw)
        self.calls += 1
        with self.answering():
            await self.answer(body, send)

    async def answer(self, body: dict[str, Any], send: Send) -> None:
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "status":
            await Recorder.json(send, self.status, {"error": self.error})
            return
        await asyncio.sleep(self.delay)
        content = f"from {self.name}"
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if not body.get("stream"):
            answer = completion(body.get("model", "?"), content)
            await Recorder.json(send, 200, answer)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": chunk(body["model"], content), "more_body": True})
        if self.mode == "cut":
            raise RuntimeError("upstream dies mid-stream")  # uvicorn drops the connection
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": body["model"], "choices": [],
                     "usage": usage}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(final).encode() + b"\n\n",
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
