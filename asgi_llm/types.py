"""ASGI type aliases shared by the core and the middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Done:
    """An awaitable that is already done: what a ``send`` wrapper hands back for a message it
    holds rather than sends (without a coroutine of its own)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield


DONE = _Done()

__all__ = ["DONE", "ASGIApp", "Message", "Receive", "Scope", "Send"]
