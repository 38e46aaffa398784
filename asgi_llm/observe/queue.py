"""``LogQueue``: logging events delivered off the response path.

``put(sinks, build, order)`` never blocks and never fails: when the queue is full the
oldest event is dropped, counted in ``dropped`` and reported to ``on_drop``.
Up to ``workers`` coroutines (started on demand, in the running loop) take events
out, call ``build()`` for the event's arguments (so the work of building them
happens after the client has its answer) and hand them to each sink in order:

- an ``async def`` sink is awaited;
- a plain function runs in the queue's own thread pool (so a slow one neither
  blocks the event loop nor starves ``asyncio.to_thread``).

Either is abandoned after about ``timeout`` seconds (one watchdog timer checks
every worker's deadline, at a quarter of the timeout, rather than a timer per call;
a thread cannot be killed: it is logged and left to finish).

Events that share an ``order`` lock (one call's events) are delivered in the
order they were put, even though several workers run at once. A sink that raises
or times out is logged and the next one runs; nothing reaches
a request. ``drain()`` waits until every queued event is delivered (at shutdown).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgi_llm.observe.sinks import Sink

log = logging.getLogger("asgi_llm.logging")
Build = Callable[[], tuple[dict[str, Any], Any, Any, Any]]  # -> kwargs, response_obj, start_time, end_time
Item = tuple[Sequence[Sink], Build, asyncio.Lock | None]


class _Busy:
    """What one worker is doing, for the watchdog: until when its current callback may run."""

    __slots__ = ("deadline", "timed_out")

    def __init__(self) -> None:
        self.deadline = math.inf  # no callback running
        self.timed_out = False  # the watchdog cancelled the worker: the cancellation is ours


class LogQueue:
    """See the module docstring."""

    def __init__(self, *, maxsize: int = 10_000, workers: int = 8, timeout: float = 10.0, threads: int = 4,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.maxsize = maxsize
        self.workers = workers
        self.timeout = timeout
        self.threads = threads
        self.on_drop = on_drop
        self.dropped = 0
        self.delivered = 0
        self._items: deque[Item] = deque()
        self._idle: list[asyncio.Future[None]] = []  # one per worker waiting for work
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: dict[asyncio.Task[None], _Busy] = {}  # each worker, and what it is doing
        self._watchdog: asyncio.TimerHandle | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._waking = False  # a worker was told to run and has not yet: it will take all that is queued

    def put(self, sinks: Sequence[Sink], build: Build, order: asyncio.Lock | None = None) -> None:
        items = self._items
        if len(items) >= self.maxsize:
            items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # a flood would otherwise log a line per drop
                log.warning("logging queue full (%d events): oldest dropped (%d so far)", self.maxsize, self.dropped)
            if self.on_drop is not None:
                self.on_drop()
        items.append((sinks, build, order))
        if not self._waking:
            self._waking = True
            self._wake()

    def _wake(self) -> None:
        """Get one more worker going: one per burst of events, not one per event (a wake-up costs
        a loop round trip); the watchdog adds workers when the running ones are stuck in a sink."""
        if self._idle:
            waiter = self._idle.pop()
            if not waiter.done():
                waiter.set_result(None)
        elif len(self._tasks) < self.workers:
            self._tasks.append(asyncio.get_running_loop().create_task(self._work(), name="asgi-llm-log"))
        else:
            self._waking = False  # every worker is busy: the first one done takes what is queued

    async def _work(self) -> None:
        items, loop = self._items, asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        slot = self._busy[task] = _Busy()  # the watchdog reads this worker's deadline here
        while True:
            self._waking = False
            while items:
                sinks, build, order = items.popleft()
                if order is None:
                    await self._deliver(sinks, build, task, slot)
                else:
                    async with order:  # taken without a pause when free, so waiters queue in put order
                        await self._deliver(sinks, build, task, slot)
            waiter = loop.create_future()
            self._idle.append(waiter)
            await waiter

    async def _deliver(self, sinks: Sequence[Sink], build: Build, task: asyncio.Task[None], slot: _Busy) -> None:
        try:
            kwargs, response, start, end = build()
        except Exception:
            log.exception("could not build a logging event; dropped")
            return
        loop = asyncio.get_running_loop()
        for sink in sinks:
            slot.deadline = loop.time() + self.timeout
            if self._watchdog is None:
                self._arm(loop)
            try:
                if sink.is_async:
                    await sink.fn(*sink.args(kwargs, response, start, end))
                else:
                    await loop.run_in_executor(self._executor(),
                                               functools.partial(sink.fn, *sink.args(kwargs, response, start, end)))
                self.delivered += 1
            except asyncio.CancelledError:
                if not slot.timed_out:
                    raise  # shutdown, not our watchdog
                slot.timed_out = False
                if task.uncancel() > 0:
                    raise  # cancelled for another reason as well
                log.error("logging callback %s took longer than %gs; abandoned", sink.name, self.timeout)
            except Exception:
                log.exception("logging callback %s raised; ignored", sink.name)
            finally:
                slot.deadline = math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer checks every worker's deadline (cheaper than a timeout per call)."""
        if self._watchdog is None:
            self._watchdog = loop.call_later(min(self.timeout / 4, 0.05), self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watchdog = None
        now = loop.time()
        for task, slot in self._busy.items():
            if slot.deadline <= now and not slot.timed_out:
                slot.timed_out = True  # tells the worker this cancellation is ours
                task.cancel()
        if self._items and not self._waking:  # every running worker is inside a slow sink
            self._waking = True
            self._wake()
        if any(slot.deadline != math.inf for slot in self._busy.values()):
            self._arm(loop)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="asgi-llm-log")
        return self._pool

    @property
    def pending(self) -> int:
        return len(self._items) + sum(1 for slot in self._busy.values() if slot.deadline != math.inf)

    async def drain(self, grace: float | None = 30.0) -> None:
        """Wait until every queued event is delivered (for at most ``grace`` seconds)."""
        try:
            async with asyncio.timeout(grace):
                while self.pending:  # noqa: ASYNC110 - polled only at shutdown; an Event would cost each delivery
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.error("%d logging events still undelivered after %gs at shutdown", self.pending, grace)

    async def aclose(self, grace: float | None = 30.0) -> None:
        """Deliver what is queued, then stop the workers and the thread pool."""
        await self.drain(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._idle, self._busy = [], [], {}
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
