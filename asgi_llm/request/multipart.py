"""Find the ``model`` field of a streamed multipart upload without buffering the upload.

Audio routes carry ``model`` as a form field (the openai SDK sends it before the
file). ``sniff_model`` feeds the incoming chunks to python-multipart's streaming
parser until that field is complete, keeping the chunks read so far so the
upload can be forwarded byte for byte; ``rest_of_body`` streams what follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import header
from asgi_llm.request.ingest import ClientDisconnected, too_large
from asgi_llm.types import Message, Receive, Scope

SNIFF_LIMIT = 1024 * 1024  # how far into an upload `model` may stand


class _Sniffer:
    def __init__(self, boundary: bytes) -> None:
        self.model: str | None = None
        self._field = bytearray()
        self._disposition = b""
        self._header = b""
        self._in_model = False
        self._value = bytearray()
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        })

    def _begin(self) -> None:
        self._disposition = b""
        self._in_model = False
        self._field.clear()
        self._header = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._field).lower() == b"content-disposition":
            self._disposition = self._header
        self._field.clear()
        self._header = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._in_model = options.get(b"name") == b"model"

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_model:
            self._value += data[start:end]

    def _end(self) -> None:
        if self._in_model and self.model is None:
            self.model = self._value.decode("utf-8", "replace")


def _boundary(scope: Scope) -> bytes:
    value = header(scope, b"content-type")
    if value is not None:
        media, options = parse_options_header(value)
        if media == b"multipart/form-data" and options.get(b"boundary"):
            return options[b"boundary"]
    raise GatewayError(415, "This route takes a multipart/form-data body.", code="unsupported_media_type")


async def sniff_model(scope: Scope, receive: Receive) -> tuple[str | None, list[bytes], bool]:
    """Read until ``model`` is known; return it, the chunks read, and whether more follow."""
    sniffer = _Sniffer(_boundary(scope))
    chunks: list[bytes] = []
    size = 0
    more = True
    while more and sniffer.model is None and size <= SNIFF_LIMIT:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        chunks.append(chunk)
        size += len(chunk)
        try:
            sniffer.parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own errors for malformed input
            raise GatewayError(400, f"Malformed multipart body: {exc}", code="invalid_multipart") from None
    return sniffer.model, chunks, more


async def rest_of_body(first: list[bytes], more: bool, receive: Receive, limit: int, done: asyncio.Event,
                       failed: asyncio.Future[BaseException] | None = None) -> AsyncIterator[bytes]:
    """The upload as read so far, then the rest of it from ``receive``, within ``limit``;
    ``done`` is set once the last byte went out, when ``receive`` is free for disconnects.

    The upstream client reads this in a task of its own, where an error would become its
    own transport error: ``failed`` gets the client's fault instead (too large, a stalled or
    lying body, a disconnect), so the caller can answer it as what it is."""
    size = 0
    try:
        for chunk in first:  # what was read to find `model` counts toward the limit too
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            yield chunk
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            yield chunk
    except (GatewayError, ClientDisconnected) as exc:
        if failed is not None and not failed.done():
            failed.set_result(exc)
        raise
    done.set()


async def upload_model(scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
    """For a layer that must know an upload's ``model`` before the terminal app does: read until
    it is known, and hand back a ``receive`` that gives what was read, then the rest as it comes."""
    model, chunks, more = await sniff_model(scope, receive)
    read = [b"".join(chunks)]

    async def replay() -> Message:
        if read:
            return {"type": "http.request", "body": read.pop(), "more_body": more}
        return await receive()

    return model, replay
