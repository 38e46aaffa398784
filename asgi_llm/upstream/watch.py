"""``DisconnectWatch``: cancel the work inside it when the client goes away.

uvicorn drops writes to a closed connection silently, so a stream would keep
pulling (and paying for) upstream tokens after its client left. The watch waits on
``receive`` for ``http.disconnect`` and cancels the task that entered it; on exit
that cancellation is absorbed and ``gone`` tells the caller not to answer.

The waiting task starts only after ``grace`` seconds: a task per request cost ~40%
of throughput on fast answers (see README, Speed), and a call that ends sooner
needs no watching. A client that leaves is noticed within ``grace`` plus a loop
turn, far inside the 1 s the gateway promises. Cancellations from elsewhere
(server shutdown) are never absorbed.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from asgi_llm.types import Receive

GRACE = 0.05


class DisconnectWatch:
    """``async with DisconnectWatch(receive) as watch:`` ... ``if watch.gone: return``."""

    __slots__ = ("_host", "_inside", "_receive", "_task", "_timer", "gone", "grace")

    def __init__(self, receive: Receive, grace: float = GRACE) -> None:
        self._receive = receive
        self.grace = grace
        self._host: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._inside = False
        self.gone = False

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if self._inside and self._host is not None:
                    self.gone = True
                    self._host.cancel()
                return

    async def __aenter__(self) -> DisconnectWatch:
        self._host = asyncio.current_task()
        self._inside = True
        self._timer = asyncio.get_running_loop().call_later(self.grace, self._start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._inside = False  # no await below: the watcher cannot cancel us after this line
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if not self.gone or self._host is None:
            return False
        # Absorb only our own cancellation; one requested elsewhere as well stays pending.
        return self._host.uncancel() == 0 and exc_type is asyncio.CancelledError
