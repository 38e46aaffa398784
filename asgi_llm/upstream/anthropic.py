"""``AnthropicProvider``: chat completions translated to Anthropic's Messages API and back.

Request (OpenAI's chat body -> ``POST <api_base>/v1/messages``): system messages become
``system``; user/assistant turns become ``messages`` (consecutive turns of one role
merged, as the API wants them alternating), their parts text and image blocks (data
URLs as base64 sources, other URLs as url sources); an assistant's ``tool_calls``
become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks; ``tools`` and
``tool_choice`` (``auto``, ``required`` -> ``any``, ``none``, a named function -> ``tool``)
map across; ``max_tokens`` (or ``max_completion_tokens``) is required there, so
``DEFAULT_MAX_TOKENS`` when the client gives none; ``stop`` -> ``stop_sequences``;
``temperature``, ``top_p``, ``stream`` and ``user`` (``metadata.user_id``) carry over.
Headers: ``x-api-key`` (the deployment's key), ``anthropic-version`` (``api_version``, else
``ANTHROPIC_VERSION``).

Answer: text blocks joined into ``content``, ``tool_use`` blocks into ``tool_calls``,
``stop_reason`` -> ``finish_reason``, usage in OpenAI's names (``AnthropicStream`` for
streams). Errors keep Anthropic's message and type; its 529 ``overloaded_error``
becomes 503, which the router retries elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from asgi_llm.request.errors import GatewayError
from asgi_llm.types import Send
from asgi_llm.upstream.anthropic_stream import STOP_REASONS, AnthropicStream, openai_usage
from asgi_llm.upstream.providers import ForwardingProvider, UpstreamCall
from asgi_llm.upstream.router import Deployment
from asgi_llm.upstream.trace import UpstreamTrace

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _image(part: dict[str, Any]) -> dict[str, Any]:
    url = part.get("image_url")
    url = url.get("url", "") if isinstance(url, dict) else str(url or "")
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_image(part))
        elif isinstance(part, dict):
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        given = _decode(arguments) if isinstance(arguments, str) else arguments
    except msgspec.DecodeError:
        given = {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": given if isinstance(given, dict) else {}}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    return None


def messages_request(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's chat body (as the upstream gets it) as a Messages API body."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        if role == "tool":
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                                     "content": _text(message.get("content"))}]
        else:
            role = "assistant" if role == "assistant" else "user"
            blocks = _blocks(message.get("content"))
            if role == "assistant":
                blocks += [_tool_use(c) for c in message.get("tool_calls") or ()]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"model": body["model"], "messages": turns,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")
                           or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                         "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
                        for t in body["tools"] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None and (body.get("tools") or choice["type"] == "none"):
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    return out


def chat_completion(data: bytes, model: str) -> bytes:
    """A Messages API answer as OpenAI's ``chat.completion``."""
    reply = _decode(data)
    text = "".join(b.get("text", "") for b in reply["content"] if b.get("type") == "text")
    calls = [{"id": b.get("id"), "type": "function",
              "function": {"name": b.get("name"), "arguments": _encode(b.get("input") or {}).decode()}}
             for b in reply["content"] if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    reason = reply.get("stop_reason")
    answer = {"id": reply.get("id"), "object": "chat.completion", "created": int(time.time()),
              "model": reply.get("model") or model,
              "choices": [{"index": 0, "message": message, "finish_reason": STOP_REASONS.get(reason, "stop")}],
              "usage": openai_usage(reply.get("usage") or {})}
    return _encode(answer)


class _Translation:
    """The ``Translation`` of one call's answers."""

    def __init__(self, model: str, include_usage: bool, trace: UpstreamTrace | None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.trace = trace

    def reply(self, data: bytes) -> bytes:
        return chat_completion(data, self.model)

    def stream(self) -> AnthropicStream:
        trace = self.trace
        on_usage = (lambda usage: setattr(trace, "usage", usage)) if trace is not None else None
        return AnthropicStream(self.model, self.include_usage, on_usage)


class AnthropicProvider(ForwardingProvider):
    """See the module docstring."""

    def url(self, dep: Deployment, path: str) -> str:
        return f"{dep.api_base}/v1/messages"

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        dep, ctx = call.dep, call.ctx
        if ctx.route.path != "/chat/completions":
            raise GatewayError(400, f"The anthropic provider serves chat completions only, not {ctx.route.path}.",
                               code="unsupported_route")
        headers = {"content-type": "application/json", "anthropic-version": dep.api_version or ANTHROPIC_VERSION}
        if dep.api_key:
            headers["x-api-key"] = dep.api_key
        asked = (ctx.body or {}).get("stream_options")
        include_usage = isinstance(asked, dict) and bool(asked.get("include_usage"))
        body = _encode(messages_request(call.body))
        try:
            await self.forward(call, body, headers, send, _Translation(dep.model, include_usage, call.trace))
        except GatewayError as err:
            if err.code is None:  # Anthropic names its errors by type only: OpenAI's shape has both
                err.code = err.type
            if err.status == 529:  # overloaded: a status the router and clients retry
                err.status, err.type = 503, "service_unavailable_error"
            raise
