"""Struct views of the request fields the gateway acts on, and their validation.

Only what the gateway relies on is checked (``model``, ``messages``, ``stream``,
``prompt``, ``input``); every other field is left for the upstream to judge and
survives untouched in the body dict. Errors name the field by msgspec's path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from asgi_llm.errors import GatewayError

Role = Literal["system", "user", "assistant", "tool", "function", "developer"]


class Message(msgspec.Struct):
    role: Role
    content: str | list[Any] | None = None


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


def validate(body: dict[str, Any], call_type: str) -> bool:
    """Check the fields we act on; return ``stream``. Raise a 400 naming the field."""
    schema = SCHEMAS.get(call_type, ModelRequest)
    if schema is ChatRequest and "prompt_id" in body:
        schema = PromptChatRequest
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
