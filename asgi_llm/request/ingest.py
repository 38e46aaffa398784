"""``Ingest``: read, decode and validate an LLM request body once, for the whole stack.

Every HTTP request's headers are held to ``max_header_bytes`` in all (431 past it).
For a POST to a JSON LLM route it reads the body (413 past ``max_body_bytes``, with
the read stopped at the limit; 408 when the client pauses longer than
``body_timeout`` between chunks), decodes it with one module-level msgspec decoder,
validates the fields we act on (400 naming the field; at most ``max_messages``
messages and content parts), and stores a ``RequestContext``. Inner layers get a ``receive`` that replays the (possibly
changed) body once, then delivers ``http.disconnect``. Multipart routes get a
context without a body and keep their stream; everything else passes untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import msgspec

from asgi_llm.request.body_timeout import BodyTimeout
from asgi_llm.request.context import RequestContext, replay_receive, set_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import header
from asgi_llm.request.routes import Route, match_route
from asgi_llm.request.schema import DEFAULT_MAX_MESSAGES, validate
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send

_decode = msgspec.json.Decoder().decode
DEFAULT_MAX_BODY = 32 * 1024 * 1024
DEFAULT_MAX_HEADERS = 64 * 1024
DEFAULT_BODY_TIMEOUT = 30.0


class ClientDisconnected(Exception):
    """The client left before its request body arrived; there is no one to answer."""


def _json_content_type(scope: Scope) -> bool:
    value = header(scope, b"content-type")
    if value is None:
        return True  # no content type at all: take it as JSON, as LiteLLM does
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise GatewayError(400, "Invalid Content-Length header.", code="invalid_request") from None


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the limit of {limit} bytes "
                        "(general_settings.max_request_size_mb).", code="request_too_large")


def headers_too_large(scope: Scope, limit: int) -> GatewayError | None:
    """431 when the request's header names and values add up to more than ``limit`` bytes."""
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value)
    if size <= limit:
        return None
    return GatewayError(431, f"Request headers total {size} bytes, more than the limit of {limit} "
                        "(general_settings.max_request_header_kb).", code="request_headers_too_large",
                        type="invalid_request_error", headers={"connection": "close"})


def _untimed(receive: Receive) -> Awaitable[Message]:
    return receive()


async def read_body(scope: Scope, receive: Receive, limit: int, timeouts: BodyTimeout | None = None) -> bytes:
    """The whole body, refusing (413) as soon as it is known to pass ``limit``; 408 when a chunk
    is later than ``timeouts`` allows."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise too_large(limit)
    timed = timeouts.receive if timeouts is not None else _untimed
    message = await timed(receive)
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the common case: one message, no copy
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await timed(receive)
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    if size > limit:
        raise too_large(limit)
    return b"".join(chunks)


def parse_body(raw: bytes, route: Route, max_messages: int = DEFAULT_MAX_MESSAGES) -> tuple[dict[str, Any], bool]:
    """Decode and validate a JSON body; return it and its ``stream`` flag."""
    if not raw.strip():
        raise GatewayError(400, "Request body is empty; expected a JSON object.", code="invalid_json")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as exc:
        raise GatewayError(400, f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    except UnicodeDecodeError:
        raise GatewayError(400, "Request body is not valid UTF-8.", code="invalid_json") from None
    except RecursionError:
        raise GatewayError(400, "Request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, f"Request body must be a JSON object, not {type(body).__name__}.",
                           code="invalid_json")
    return body, validate(body, route.call_type, max_messages)


class Limits:
    """What one request may send: body size, header size, pause between body chunks, messages."""

    __slots__ = ("body_timeout", "max_body_bytes", "max_header_bytes", "max_messages", "timeouts")

    def __init__(self, *, max_body_bytes: int = DEFAULT_MAX_BODY, max_header_bytes: int = DEFAULT_MAX_HEADERS,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.max_messages = max_messages
        self.timeouts = BodyTimeout(body_timeout)


async def ingest(scope: Scope, receive: Receive, route: Route, limits: Limits) -> RequestContext:
    """Build the request's context from the wire (shared by ``Ingest`` and the terminal app)."""
    if route.body == "multipart":
        return RequestContext(route, None, None, stream=False)
    if not _json_content_type(scope):
        raise GatewayError(415, f"{route.path} takes a JSON body (Content-Type: application/json).",
                           code="unsupported_media_type")
    raw = await read_body(scope, receive, limits.max_body_bytes, limits.timeouts)
    body, stream = parse_body(raw, route, limits.max_messages)
    return RequestContext(route, raw, body, stream)


class Ingest:
    """The first LLM layer: one parse per request, stored for every layer after it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY,
                 max_header_bytes: int = DEFAULT_MAX_HEADERS, body_timeout: float = DEFAULT_BODY_TIMEOUT,
                 max_messages: int = DEFAULT_MAX_MESSAGES, limits: Limits | None = None) -> None:
        self.app = app
        self.limits = limits if limits is not None else Limits(
            max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes, body_timeout=body_timeout,
            max_messages=max_messages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = headers_too_large(scope, self.limits.max_header_bytes)
        if refused is not None:
            raise refused
        route = match_route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            ctx = await ingest(scope, receive, route, self.limits)
        except ClientDisconnected:
            return
        set_context(scope, ctx)
        if route.body == "multipart":  # the upload streams through: its reads get the deadline
            await self.app(scope, self.limits.timeouts.bind(receive), send)
        else:
            await self.app(scope, replay_receive(ctx, receive), send)
