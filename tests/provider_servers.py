"""Fake Azure OpenAI and Anthropic servers: real HTTP servers that check paths, query strings, headers and
bodies as the providers document them, and answer (and stream) in the providers' own formats."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs

from asgi_llm.types import Receive, Scope, Send
from tests.servers import Recorder, chunk, completion, lifespan, read_request

AZURE_KEY = "azure-key-0123456789abcdef"
AZURE_TOKEN = "azure-ad-token-abcdef0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in scope["headers"]}


class FakeAzure:
    """Azure OpenAI: ``/openai/deployments/<deployment>/<route>?api-version=...`` or ``/openai/v1/<route>``,
    authenticated by ``api-key`` or an Entra ID bearer token. ``filtered``: answer Azure's content-filter
    error. ``seen`` records (path, query, headers, body)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, list[str]], dict[str, str], Any]] = []
        self.filtered = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(scope, receive, send)
            return
        raw = await read_request(receive)
        headers, query = _headers(scope), parse_qs(scope["query_string"].decode())
        body = json.loads(raw) if raw else None
        path: str = scope["path"]
        self.seen.append((path, query, headers, body))
        ok_key = headers.get("api-key") == AZURE_KEY and "authorization" not in headers
        ok_token = headers.get("authorization") == f"Bearer {AZURE_TOKEN}" and "api-key" not in headers
        if not (ok_key or ok_token):
            await Recorder.json(send, 401, {"error": {"code": "401", "message": "Access denied due to invalid "
                                                      "subscription key or wrong API endpoint."}})
            return
        if path.startswith("/openai/deployments/"):
            if not query.get("api-version"):
                await Recorder.json(send, 404, {"error": {"code": "404", "message": "Resource not found"}})
                return
            deployment, _, route = path.removeprefix("/openai/deployments/").partition("/")
        elif path.startswith("/openai/v1/"):
            deployment, route = body["model"], path.removeprefix("/openai/v1/")
        else:
            await Recorder.json(send, 404, {"error": {"code": "404", "message": "Resource not found"}})
            return
        if self.filtered:
            await Recorder.json(send, 400, {"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                           "management policy. Please modify your prompt and retry.",
                "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation",
                               "content_filter_result": {"violence": {"filtered": True, "severity": "high"}}}}})
            return
        if route == "embeddings":
            await Recorder.json(send, 200, {"object": "list", "model": deployment, "usage": {
                "prompt_tokens": 2, "total_tokens": 2}, "data": [{"object": "embedding", "index": 0,
                                                                   "embedding": [0.25, 0.75]}]})
            return
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for word in ("azure ", "says ", "hi"):
                await send({"type": "http.response.body", "body": chunk(deployment, word), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        await Recorder.json(send, 200, completion(deployment, f"azure {deployment} says hi"))


class FakeAnthropic:
    """Anthropic's Messages API: ``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version``;
    the body is checked as the API requires it (``max_tokens``, alternating roles starting with the
    user, known block types). A request offering tools whose last message mentions the weather gets a
    ``tool_use`` answer; ``mode``: ``overloaded`` (529), ``rate`` (429 with its headers), ``slow``
    (a stream of 200 deltas, 20 ms apart). ``seen`` records the bodies; ``gone`` counts clients that left."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.mode = "ok"
        self.gone = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(scope, receive, send)
            return
        raw = await read_request(receive)
        headers = _headers(scope)
        if scope["path"] != "/v1/messages" or scope["method"] != "POST":
            await self.error(send, 404, "not_found_error", f"Not found: {scope['path']}")
            return
        if headers.get("x-api-key") != ANTHROPIC_KEY or "authorization" in headers:
            await self.error(send, 401, "authentication_error", "invalid x-api-key")
            return
        if headers.get("anthropic-version") != "2023-06-01" or headers.get("content-type") != "application/json":
            await self.error(send, 400, "invalid_request_error", "anthropic-version header is required")
            return
        body = json.loads(raw)
        self.seen.append(body)
        problem = self.check(body)
        if problem:
            await self.error(send, 400, "invalid_request_error", problem)
            return
        if self.mode == "overloaded":
            await self.error(send, 529, "overloaded_error", "Overloaded")
            return
        if self.mode == "rate":
            await Recorder.json(send, 429, {"type": "error", "error": {"type": "rate_limit_error",
                                                                       "message": "Number of requests exceeded"}},
                                [(b"retry-after", b"7"), (b"anthropic-ratelimit-requests-remaining", b"0")])
            return
        tool = bool(body.get("tools")) and "weather" in json.dumps(body["messages"][-1])
        if body.get("stream"):
            await self.stream(body, tool, receive, send)
            return
        content = ([{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]
                   if tool else [{"type": "text", "text": "Hello from claude"}])
        await Recorder.json(send, 200, {"id": "msg_01", "type": "message", "role": "assistant",
                                        "model": body["model"], "content": content,
                                        "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
                                        "usage": {"input_tokens": 12, "output_tokens": 6,
                                                  "cache_read_input_tokens": 4}})

    @staticmethod
    def check(body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("max_tokens"), int) or not isinstance(body.get("model"), str):
            return "max_tokens: Field required"
        roles = [m.get("role") for m in body.get("messages", [])]
        if not roles or roles[0] != "user" or any(a == b for a, b in pairwise(roles)):
            return "messages: roles must alternate between user and assistant, starting with user"
        for message in body["messages"]:
            content = message["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks:
                if block.get("type") not in ("text", "image", "tool_use", "tool_result"):
                    return f"unknown content block type {block.get('type')!r}"
        if "system" in body and not isinstance(body["system"], str | list):
            return "system: must be a string or a list of text blocks"
        for tool in body.get("tools", []):
            if "input_schema" not in tool or "name" not in tool:
                return "tools: input_schema and name are required"
        return None

    @staticmethod
    async def error(send: Send, status: int, kind: str, message: str) -> None:
        await Recorder.json(send, status, {"type": "error", "error": {"type": kind, "message": message}})

    async def stream(self, body: dict[str, Any], tool: bool, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for event in stream_events(body["model"], tool, 200 if self.mode == "slow" else 0):
            if self.mode == "slow":
                try:
                    message = await asyncio.wait_for(receive(), 0.02)
                except TimeoutError:
                    message = {}
                if message.get("type") == "http.disconnect":
                    self.gone += 1
                    return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(model: str, tool: bool = False, extra: int = 0) -> list[bytes]:
    """An Anthropic stream as the API sends it: text (or a tool call whose JSON comes in pieces)."""
    events = [sse("message_start", {"type": "message_start", "message": {
        "id": "msg_02", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        sse("ping", {"type": "ping"})]
    if tool:
        events += [sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}}})]
        events += [sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": piece}}) for piece in ('{"ci', 'ty": "Pa', 'ris"}')]
    else:
        events += [sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})]
        words = ["Hello", " from", " claude"] + [" more"] * extra
        events += [sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "text_delta", "text": word}}) for word in words]
    events += [sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
               sse("message_delta", {"type": "message_delta", "delta": {
                   "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": 15}}),
               sse("message_stop", {"type": "message_stop"})]
    return events
