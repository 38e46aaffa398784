"""Answers made by the gateway itself: a hook's rejection message as a normal reply.

Chat gets a 200 ``chat.completion`` (``finish_reason: "stop"``, zero usage, the
requested model) or, streaming, SSE chunks (role + content, then a finish chunk)
and ``data: [DONE]``; ``/completions`` the same in ``text_completion`` shape.
Other routes cannot carry text as an answer: they get a 400 with the message.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from asgi_llm.request.context import RequestContext
from asgi_llm.request.errors import DONE_EVENT, GatewayError
from asgi_llm.request.http import send_whole
from asgi_llm.types import Send

_encode = msgspec.json.Encoder().encode
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _events(ctx: RequestContext, text: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    if ctx.call_type == "completion":
        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return [chunk({"role": "assistant", "content": text}, None), chunk({}, "stop")]

    def piece(value: str, finish: str | None) -> dict[str, Any]:
        return {**base, "object": "text_completion",
                "choices": [{"index": 0, "text": value, "logprobs": None, "finish_reason": finish}]}
    return [piece(text, None), piece("", "stop")]


def _whole(ctx: RequestContext, text: str, base: dict[str, Any]) -> dict[str, Any]:
    if ctx.call_type == "completion":
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": ZERO_USAGE}
    return {**base, "object": "text_completion", "usage": ZERO_USAGE,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}]}


async def send_rejection(ctx: RequestContext, text: str, send: Send) -> None:
    """Answer with ``text`` in the route's own shape; the upstream is never called."""
    if ctx.call_type not in ("completion", "text_completion"):
        raise GatewayError(400, text, code="rejected")
    prefix = "chatcmpl-" if ctx.call_type == "completion" else "cmpl-"
    base = {"id": prefix + uuid.uuid4().hex, "created": int(time.time()), "model": ctx.model}
    if ctx.stream:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        body = b"".join(b"data: " + _encode(e) + b"\n\n" for e in _events(ctx, text, base))
        await send({"type": "http.response.body", "body": body + DONE_EVENT})
        return
    await send_whole(send, 200, _encode(_whole(ctx, text, base)))
