"""LiteLLM's response type names, as the gateway's views (``asgi_llm.hooks.response.Obj``).

A hook file annotated with LiteLLM's types works unchanged but for its imports:
``from asgi_llm import ModelResponse, ModelResponseStream``. Each name is

- what the gateway hands hooks: a chat answer is a ``ModelResponse`` (its choices
  ``Choices``, their ``message`` a ``Message``, its ``usage`` a ``Usage``), a streamed
  chunk a ``ModelResponseStream`` (``StreamingChoices`` with a ``Delta``), an
  embeddings answer an ``EmbeddingResponse``, a text completion a
  ``TextCompletionResponse``, so ``isinstance`` checks hold;
- a constructor with LiteLLM's defaults, for a hook that builds a reply:
  ``ModelResponse(choices=[Choices(message=Message(content="No."))])``. Nested
  views or plain dicts may be given; ``Usage`` fills ``total_tokens`` when not given.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

from asgi_llm.hooks.response import _BY_OBJECT, Obj


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Usage(Obj):
    __slots__ = ()

    def __init__(self, data: dict[str, Any] | None = None, /, **values: Any) -> None:
        super().__init__(data, **values)
        if data is None or values:
            given = self._data
            if "total_tokens" not in values and not (data and "total_tokens" in data):
                given["total_tokens"] = (given.get("prompt_tokens") or 0) + (given.get("completion_tokens") or 0)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class Message(Obj):
    __slots__ = ()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"content": None, "role": "assistant", "tool_calls": None, "function_call": None}


class Delta(Obj):
    __slots__ = ()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"content": None, "role": None, "tool_calls": None, "function_call": None}


class Choices(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"message": Message}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"finish_reason": "stop", "index": 0, "message": Message.defaults()}


class StreamingChoices(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"delta": Delta}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"finish_reason": None, "index": 0, "delta": Delta.defaults()}


class ModelResponse(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"choices": Choices, "usage": Usage}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"id": _id("chatcmpl"), "created": int(time.time()), "model": None, "object": "chat.completion",
                "system_fingerprint": None, "choices": [Choices.defaults()], "usage": Usage.defaults()}


class ModelResponseStream(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"choices": StreamingChoices, "usage": Usage}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"id": _id("chatcmpl"), "created": int(time.time()), "model": None, "object": "chat.completion.chunk",
                "system_fingerprint": None, "choices": [StreamingChoices.defaults()]}


class TextCompletionResponse(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"usage": Usage}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"id": _id("cmpl"), "created": int(time.time()), "model": None, "object": "text_completion",
                "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": Usage.defaults()}


class EmbeddingResponse(Obj):
    __slots__ = ()
    fields: ClassVar[dict[str, type[Obj]]] = {"usage": Usage}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"object": "list", "data": [], "model": None, "usage": Usage.defaults()}


_BY_OBJECT.update({"chat.completion": ModelResponse, "chat.completion.chunk": ModelResponseStream,
                   "text_completion": TextCompletionResponse, "list": EmbeddingResponse})

__all__ = ["Choices", "Delta", "EmbeddingResponse", "Message", "ModelResponse", "ModelResponseStream",
           "StreamingChoices", "TextCompletionResponse", "Usage"]
