"""``BodyTimeout``: a limit on how long a request body may pause between chunks.

A client whose ``Content-Length`` promises more than it sends, or that sends a byte
a minute, would otherwise hold its connection and the memory read so far forever.
``await timeouts.receive(receive)`` is ``await receive()`` that fails with 408 when
no body message arrived within ``timeout`` seconds; ``bind(receive)`` is that as a
``receive`` of its own.

One sweeper task per event loop checks the reads in progress a few times per
``timeout`` and cancels those past their deadline; a read costs a dict entry, not a
timer of its own (an ``asyncio.timeout`` per read measured ~9 us under uvloop, ~10%
of a whole proxied call). A read may so run up to a quarter ``timeout`` (at most
one second) past its limit.
"""

from __future__ import annotations

import asyncio
import time

from asgi_llm.errors import GatewayError
from asgi_llm.types import Message, Receive


def body_timeout_error(timeout: float) -> GatewayError:
    return GatewayError(408, f"The request body did not arrive: no data for {timeout:g}s "
                        "(general_settings.request_body_timeout).", code="request_timeout",
                        headers={"connection": "close"})


class BodyTimeout:
    """Deadlines for body reads; see the module docstring."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.period = min(1.0, timeout / 4)
        self._waiting: dict[asyncio.Task[object], float] = {}  # reading task -> deadline (monotonic)
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, receive: Receive) -> Receive:
        """``receive`` with this deadline on each call until the body is complete; after that
        (a wait for ``http.disconnect`` may last as long as the upstream call) none."""
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            message = await self.receive(receive)
            complete = not message.get("more_body", False)
            return message

        return timed

    async def receive(self, receive: Receive) -> Message:
        """The next message from ``receive``, or 408 when none came within ``timeout``."""
        task = asyncio.current_task()
        if task is None:  # not inside a task (a bare coroutine driven by hand): nothing to cancel
            return await receive()
        if self._loop is not task.get_loop() or self._sweeper is None or self._sweeper.done():
            self._start(task.get_loop())
        self._waiting[task] = time.monotonic() + self.timeout
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise body_timeout_error(self.timeout) from None
        finally:
            self._waiting.pop(task, None)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting.clear()
        self._expired.clear()
        self._sweeper = loop.create_task(self._sweep(), name="asgi-llm body timeout")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            late = [task for task, deadline in self._waiting.items() if deadline <= now]
            for task in late:
                del self._waiting[task]
                self._expired.add(task)
                task.cancel()
