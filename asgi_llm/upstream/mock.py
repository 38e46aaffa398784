"""The ``mock/<name>`` provider: deterministic answers in-process, no network.

Chat and completions answer ``mock_response`` (the deployment's, or the request's
for a mock deployment) or, by default, a fixed sentence echoing the last user
message; streaming splits the text by words into OpenAI chunks and ends with
``[DONE]``. Embeddings are stable vectors hashed from the input; moderations flag
nothing. Other routes get a 400 saying the mock does not serve them.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import msgspec

from asgi_llm.request.context import RequestContext
from asgi_llm.request.errors import DONE_EVENT, GatewayError
from asgi_llm.request.http import send_whole
from asgi_llm.types import Send
from asgi_llm.upstream.router import Deployment

_encode = msgspec.json.Encoder().encode
_WORDS = re.compile(r"\S+\s*|\s+")
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def mock_text(dep: Deployment, body: dict[str, Any]) -> str:
    requested = body.get("mock_response")
    if isinstance(requested, str):
        return requested
    if dep.mock_response is not None:
        return dep.mock_response
    if "messages" in body:
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        said = _text_of(users[-1].get("content")) if users else ""
    else:
        prompt = body.get("prompt")
        said = prompt if isinstance(prompt, str) else ""
    return f"This is a mock response from {dep.model_name}. You said: {said[:200]}"


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _send_json(send: Send, payload: dict[str, Any]) -> None:
    await send_whole(send, 200, _encode(payload))


async def _send_stream(send: Send, events: list[dict[str, Any]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE})
    for event in events:
        await send({"type": "http.response.body", "body": b"data: " + _encode(event) + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": DONE_EVENT, "more_body": False})


def _chat(dep: Deployment, body: dict[str, Any], stream: bool, call_id: str, created: int) -> Any:
    text = mock_text(dep, body)
    prompt = sum(_tokens(_text_of(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
    usage = _usage(prompt, _tokens(text))
    base = {"id": call_id, "created": created, "model": dep.model}
    if not stream:
        return {**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in _WORDS.findall(text)]
    events.append(chunk({}, "stop"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return events


def _completion(dep: Deployment, body: dict[str, Any], stream: bool, call_id: str, created: int) -> Any:
    text = mock_text(dep, body)
    base = {"id": call_id, "created": created, "model": dep.model, "object": "text_completion"}
    if not stream:
        usage = _usage(_tokens(str(body.get("prompt", ""))), _tokens(text))
        return {**base, "usage": usage,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}]}
    events = [{**base, "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]}
              for w in _WORDS.findall(text)]
    events.append({**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        prompt = body.get("prompt")
        events.append({**base, "choices": [], "usage": _usage(_tokens(str(prompt or "")), _tokens(text))})
    return events


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:16]]


def _embeddings(dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": _embedding(str(x))} for i, x in enumerate(inputs)]
    tokens = sum(_tokens(str(x)) for x in inputs)
    return {"object": "list", "model": dep.model, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def answer(dep: Deployment, ctx: RequestContext, send: Send, body: dict[str, Any] | None = None) -> None:
    """Answer one request as the mock model ``dep`` (``body``: as sent upstream, else the context's)."""
    body = body if body is not None else ctx.body or {}
    call_type = ctx.call_type
    call_id = "mock-" + hashlib.sha256(_encode(body)).hexdigest()[:24]
    created = int(time.time())
    if call_type in ("completion", "text_completion"):
        build = _chat if call_type == "completion" else _completion
        result = build(dep, body, ctx.stream, call_id, created)
        if ctx.stream:
            await _send_stream(send, result)
        else:
            await _send_json(send, result)
    elif call_type == "embeddings":
        await _send_json(send, _embeddings(dep, body))
    elif call_type == "moderation":
        await _send_json(send, {"id": call_id, "model": dep.model, "results": [
            {"flagged": False, "categories": {}, "category_scores": {}}]})
    else:
        raise GatewayError(400, f"The mock provider does not serve {ctx.route.path} (model {dep.model_name!r}).",
                           code="unsupported_route")
