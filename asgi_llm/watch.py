"""``DisconnectWatch``: cancel the work inside it when the client goes away.

uvicorn drops writes to a closed connection silently, so a stream would keep
pulling (and paying for) upstream tokens after its client left. The watcher waits
on ``receive`` for ``http.disconnect`` in a second task and cancels the enclosed
scope; ``gone`` then tells the caller not to answer.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import anyio

from asgi_llm.types import Receive


class DisconnectWatch:
    """``async with DisconnectWatch(receive) as watch:`` ... ``if watch.gone: return``."""

    __slots__ = ("_receive", "_scope", "_task", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._scope = anyio.CancelScope()
        self._task: asyncio.Task[None] | None = None
        self.gone = False

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self._scope.cancel()
                return

    async def __aenter__(self) -> DisconnectWatch:
        self._scope.__enter__()
        self._task = asyncio.ensure_future(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return bool(self._scope.__exit__(exc_type, exc, tb))
