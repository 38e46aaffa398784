"""Small HTTP pieces every layer needs: a header's value, and a whole response in two messages."""

from __future__ import annotations

from collections.abc import Iterable

from asgi_llm.types import Scope, Send

JSON = b"application/json"


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower-case bytes, as ASGI gives them), or None."""
    for key, value in scope["headers"]:
        if key == name:
            found: bytes = value
            return found
    return None


async def send_whole(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A complete response: start (with its type and ``content-length``), then the body."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
