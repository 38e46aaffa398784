"""The error model: one exception type, OpenAI-shaped bodies, and the two renderings.

Before ``http.response.start`` an error is a JSON body
``{"error": {"message", "type", "param", "code"}}`` with its status; after an SSE
response started it is ``data: {"error": ...}`` followed by ``data: [DONE]``.
``to_gateway_error`` turns anything raised in the stack (our errors, Starlette's
``HTTPException``, an exception carrying ``status_code``) into a ``GatewayError``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.exceptions import HTTPException

from asgi_llm.request.http import send_whole
from asgi_llm.types import Send

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}

_encode = msgspec.json.Encoder().encode
DONE_EVENT = b"data: [DONE]\n\n"
ERROR_KEY = "asgi_llm.error"  # scope["state"] key: the exception `Errors` rendered, for observers outside it


def error_type(status: int) -> str:
    """The OpenAI-style ``type`` for a status: specific where one exists, else by class."""
    found = _TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "internal_server_error"


class GatewayError(Exception):
    """An error the gateway answers with; ``status`` in 400-599, ``headers`` sent as is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - mirrors the OpenAI field name
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code: Any = code if code is not None else str(status)
        self.type = type or error_type(status)
        self.headers = headers or {}

    @property
    def status_code(self) -> int:  # the name hooks written for LiteLLM/FastAPI look for
        return self.status

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json(self) -> bytes:
        return _encode(self.body())

    def sse(self) -> bytes:
        """The SSE rendering: one error event then ``[DONE]``."""
        return b"data: " + self.json() + b"\n\n" + DONE_EVENT


def detail_message(detail: Any) -> str:
    """LiteLLM's ``HTTPException.detail`` shapes reduced to one message string."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        inner = detail.get("error", detail.get("message"))
        if isinstance(inner, str) and len(detail) == 1:
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("message"), str) and len(detail) == 1:
            return str(inner["message"])
    try:
        return _encode(detail).decode()
    except (TypeError, msgspec.EncodeError):
        return str(detail)


def to_gateway_error(exc: BaseException) -> GatewayError:
    """Map anything raised inside the stack to the error the client gets."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, HTTPException):
        status = exc.status_code if 400 <= exc.status_code <= 599 else 500
        return GatewayError(status, detail_message(exc.detail), headers=dict(exc.headers or {}))
    found = getattr(exc, "status_code", None)
    status = found if isinstance(found, int) and 400 <= found <= 599 else 500
    return GatewayError(status, str(exc) or type(exc).__name__)


async def send_json_error(send: Send, err: GatewayError) -> None:
    """Send ``err`` as a complete JSON response (only before the response started)."""
    await send_whole(send, err.status, err.json(),
                     headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()])
