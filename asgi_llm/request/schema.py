"""Struct views of the request fields the gateway acts on, and their validation.

Only what the gateway relies on is checked (``model``, ``messages``, ``stream``,
``prompt``, ``input``); every other field is left for the upstream to judge and
survives untouched in the body dict. Errors name the field by msgspec's path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from asgi_llm.request.errors import GatewayError

Role = Literal["system", "user", "assistant", "tool", "function", "developer"]
DEFAULT_MAX_MESSAGES = 10_000
ContentPart = str | dict[str, Any]  # a content part object ({"type": "text", ...}), or plain text


class Message(msgspec.Struct):
    role: Role
    content: str | list[ContentPart] | None = None


class ModelRequest(msgspec.Struct):
    """Every JSON route: a string ``model`` to route by, and ``stream`` when present."""

    model: str
    stream: bool | None = None


class ChatRequest(msgspec.Struct):
    model: str
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    prompt_variables: Any = None  # a model's configured prompt may take them; checked in `validate`


class PromptChatRequest(msgspec.Struct):
    """A chat request naming a stored prompt: the prompt supplies the messages."""

    model: str
    prompt_id: str
    messages: list[Message] = msgspec.field(default_factory=list)
    prompt_variables: Any = None  # checked in `validate`, without the copy msgspec would make
    prompt_label: str | None = None
    prompt_version: int | str | None = None
    stream: bool | None = None


class CompletionRequest(msgspec.Struct):
    model: str
    prompt: str | list[Any]
    stream: bool | None = None


class EmbeddingRequest(msgspec.Struct):
    model: str
    input: str | list[Any]


SCHEMAS: dict[str, type[msgspec.Struct]] = {
    "completion": ChatRequest,
    "text_completion": CompletionRequest,
    "embeddings": EmbeddingRequest,
}

_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def param_of(message: str) -> str | None:
    """The field a msgspec ValidationError names: ``messages[0].role``, ``model``..."""
    at = _PATH.search(message)
    base = at.group(1) if at else ""
    missing = _MISSING.search(message)
    if missing:
        return f"{base}.{missing.group(1)}" if base else missing.group(1)
    return base or None


def _too_many(body: dict[str, Any], limit: int) -> None:
    """400 when a chat body holds more than ``limit`` messages, or content parts in all."""
    messages = body.get("messages")
    if type(messages) is not list:
        return  # the schema says what is wrong with it
    count = len(messages)
    if count <= limit:
        for message in messages:
            content = message.get("content") if type(message) is dict else None
            if type(content) is list:
                count += len(content)
        if count <= limit:
            return
    raise GatewayError(400, f"Invalid request: more than {limit} messages and content parts in all (at `messages`; "
                       "general_settings.max_messages).", param="messages", code="too_many_messages")


def validate(body: dict[str, Any], call_type: str, max_messages: int = DEFAULT_MAX_MESSAGES) -> bool:
    """Check the fields we act on; return ``stream``. Raise a 400 naming the field."""
    schema = SCHEMAS.get(call_type, ModelRequest)
    if schema is ChatRequest and "prompt_id" in body:
        schema = PromptChatRequest
    if schema is ChatRequest or schema is PromptChatRequest:
        _too_many(body, max_messages)  # before the schema walks them all
    try:
        view = msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message = _PATH.sub("", text)
        param = param_of(text)
        raise GatewayError(400, f"Invalid request: {message}" + (f" (at `{param}`)" if param else ""),
                           param=param, code="invalid_request") from None
    if (schema is ChatRequest or schema is PromptChatRequest) and "prompt_variables" in body:
        variables = body["prompt_variables"]
        if variables is not None and type(variables) is not dict:
            kind = _JSON_KINDS.get(type(variables), type(variables).__name__)
            raise GatewayError(400, f"Invalid request: Expected `object | null`, got `{kind}` (at `prompt_variables`)",
                               param="prompt_variables", code="invalid_request")
    return bool(getattr(view, "stream", False))


_JSON_KINDS = {list: "array", str: "str", int: "int", float: "float", bool: "bool"}
