"""``BodyTimeout``: a limit on how long a request body may pause between chunks.

A client whose ``Content-Length`` promises more than it sends, or that sends a byte
a minute, would otherwise hold its connection and the memory read so far forever.
``await timeouts.receive(receive)`` is ``await receive()`` that fails with 408 when
no body message arrived within ``timeout`` seconds; ``bind(receive)`` is that as a
``receive`` of its own.

Most bodies are complete before the gateway asks for them: such a read is taken in
one step of ``receive``'s coroutine, with no task lookup and no timer. A read that
waits gets a deadline: one sweeper task per
event loop checks the waiting reads a few times per ``timeout`` and cancels those
past it. (An ``asyncio.timeout`` per read measured ~9 us under uvloop, and even
``asyncio.current_task()`` ~2 us on this Python: together ~3% of a proxied call,
for every request.) A read may run up to a quarter ``timeout`` (at most one second)
past its limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

from asgi_llm.request.errors import GatewayError
from asgi_llm.types import Message, Receive


def body_timeout_error(timeout: float) -> GatewayError:
    return GatewayError(408, f"The request body did not arrive: no data for {timeout:g}s "
                        "(general_settings.request_body_timeout).", code="request_timeout",
                        headers={"connection": "close"})


class _Yield:
    """Hands a future a driven coroutine waits on to the task, and its resumption back."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.future)


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
        """The next message from ``receive``, or 408 when none came within ``timeout``.

        The usual body is already in when it is asked for: ``receive()`` then finishes without
        waiting, and is taken as is (one step of its coroutine; no task lookup, no deadline).
        Only a read that has to wait gets a deadline, and is driven on from here."""
        coro = receive().__await__()
        if not hasattr(coro, "send"):  # a server whose receive() is a plain awaitable, not a coroutine (granian)
            coro = _delegate(coro)
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            message: Message = done.value
            return message
        return await self._wait(coro, waiting_on)

    async def _wait(self, coro: Generator[Any, None, Message], waiting_on: Any) -> Message:
        """Drive a ``receive`` that waits, under a deadline: this task waits on what it waits on."""
        task = asyncio.current_task()
        assert task is not None
        if self._loop is not task.get_loop() or self._sweeper is None or self._sweeper.done():
            self._start(task.get_loop())
        self._waiting[task] = time.monotonic() + self.timeout
        try:
            while True:
                try:
                    sent = await _Yield(waiting_on)
                except BaseException as exc:  # cancelled (by the sweeper, or the server): the read is too
                    waiting_on = coro.throw(exc)
                else:
                    waiting_on = coro.send(sent)
        except StopIteration as done:
            message: Message = done.value
            return message
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


def _delegate(steps: Iterator[Any]) -> Generator[Any, Any, Message]:
    """An awaitable's iterator as a generator (``send``/``throw``), driven here like a coroutine."""
    message: Message = yield from cast(Generator[Any, Any, Message], steps)
    return message
