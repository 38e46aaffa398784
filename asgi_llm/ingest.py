"""``Ingest``: read, decode and validate an LLM request body once, for the whole stack.

For a POST to a JSON LLM route it reads the body (413 past ``max_body_bytes``, with
the read stopped at the limit), decodes it with one module-level msgspec decoder,
validates the fields we act on (400 naming the field), and stores a
``RequestContext``. Inner layers get a ``receive`` that replays the (possibly
changed) body once, then delivers ``http.disconnect``. Multipart routes get a
context without a body and keep their stream; everything else passes untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec

from asgi_llm.context import RequestContext, replay_receive, set_context
from asgi_llm.errors import GatewayError
from asgi_llm.routes import Route, match_route
from asgi_llm.schema import validate
from asgi_llm.types import ASGIApp, Receive, Scope, Send

_decode = msgspec.json.Decoder().decode
DEFAULT_MAX_BODY = 32 * 1024 * 1024


class ClientDisconnected(Exception):
    """The client left before its request body arrived; there is no one to answer."""


def _json_content_type(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # no content type at all: take it as JSON, as LiteLLM does


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise GatewayError(400, "Invalid Content-Length header.", code="invalid_request") from None
    return None


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the limit of {limit} bytes "
                        "(general_settings.max_request_size_mb).", code="request_too_large")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to pass ``limit``."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the common case: one message, no copy
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
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


def parse_body(raw: bytes, route: Route) -> tuple[dict[str, Any], bool]:
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
    return body, validate(body, route.call_type)


async def ingest(scope: Scope, receive: Receive, route: Route, limit: int) -> RequestContext:
    """Build the request's context from the wire (shared by ``Ingest`` and the terminal app)."""
    if route.body == "multipart":
        return RequestContext(route, None, None, stream=False)
    if not _json_content_type(scope):
        raise GatewayError(415, f"{route.path} takes a JSON body (Content-Type: application/json).",
                           code="unsupported_media_type")
    raw = await read_body(scope, receive, limit)
    body, stream = parse_body(raw, route)
    return RequestContext(route, raw, body, stream)


class Ingest:
    """The first LLM layer: one parse per request, stored for every layer after it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match_route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            ctx = await ingest(scope, receive, route, self.max_body_bytes)
        except ClientDisconnected:
            return
        set_context(scope, ctx)
        if route.body == "multipart":
            await self.app(scope, receive, send)
        else:
            await self.app(scope, replay_receive(ctx, receive), send)
