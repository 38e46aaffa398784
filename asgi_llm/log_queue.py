"""``LogQueue``: logging events delivered off the response path.

``put(sinks, build, order)`` never blocks and never fails: when the queue is full the
oldest event is dropped, counted in ``dropped`` and reported to ``on_drop``.
``workers`` coroutines (started on first use, in the running loop) take events
out, call ``build()`` for the event's arguments (so the work of building them
happens after the client has its answer) and hand them to each sink in order:

- an ``async def`` sink is awaited under ``timeout`` seconds;
- a plain function runs in the queue's own thread pool (so a slow one neither
  blocks the event loop nor starves ``asyncio.to_thread``), waited for up to
  ``timeout`` (a thread cannot be killed: it is logged and left to finish).

Events that share an ``order`` lock (one call's events) are delivered in the
order they were put, even though several workers run at once. A sink that raises
or times out is logged and the next one runs; nothing reaches
a request. ``drain()`` waits until every queued event is delivered (at shutdown).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgi_llm.log_sinks import Sink

log = logging.getLogger("asgi_llm.logging")
Build = Callable[[], tuple[dict[str, Any], Any, Any, Any]]  # -> kwargs, response_obj, start_time, end_time
Item = tuple[Sequence[Sink], Build, asyncio.Lock | None]


class LogQueue:
    """See the module docstring."""

    def __init__(self, *, maxsize: int = 10_000, workers: int = 8, timeout: float = 10.0, threads: int = 4,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.maxsize, self.workers, self.timeout, self.threads = maxsize, workers, timeout, threads
        self.on_drop = on_drop
        self.dropped = 0
        self.delivered = 0
        self._queue: asyncio.Queue[Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None

    def put(self, sinks: Sequence[Sink], build: Build, order: asyncio.Lock | None = None) -> None:
        queue = self._queue
        if queue is None:
            queue = self._start()
        if queue.full():
            queue.get_nowait()
            queue.task_done()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # a flood would otherwise log a line per drop
                log.warning("logging queue full (%d events): oldest dropped (%d so far)", self.maxsize, self.dropped)
            if self.on_drop is not None:
                self.on_drop()
        queue.put_nowait((sinks, build, order))

    def _start(self) -> asyncio.Queue[Item]:
        self._queue = asyncio.Queue(self.maxsize)
        self._tasks = [asyncio.create_task(self._work(), name=f"asgi-llm-log-{i}") for i in range(self.workers)]
        return self._queue

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            sinks, build, order = await queue.get()
            try:
                if order is None:
                    await self._deliver(sinks, build)
                else:
                    async with order:  # taken without a pause when free, so waiters queue in put order
                        await self._deliver(sinks, build)
            finally:
                queue.task_done()

    async def _deliver(self, sinks: Sequence[Sink], build: Build) -> None:
        try:
            kwargs, response, start, end = build()
        except Exception:
            log.exception("could not build a logging event; dropped")
            return
        for sink in sinks:
            try:
                async with asyncio.timeout(self.timeout):
                    if sink.is_async:
                        await sink.fn(*sink.args(kwargs, response, start, end))
                    else:
                        await asyncio.get_running_loop().run_in_executor(
                            self._executor(), functools.partial(sink.fn, *sink.args(kwargs, response, start, end)))
                self.delivered += 1
            except TimeoutError:
                log.error("logging callback %s took longer than %gs; abandoned", sink.name, self.timeout)
            except Exception:
                log.exception("logging callback %s raised; ignored", sink.name)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="asgi-llm-log")
        return self._pool

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def drain(self, grace: float | None = 30.0) -> None:
        """Wait until every queued event is delivered (for at most ``grace`` seconds)."""
        if self._queue is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self._queue.join()
        except TimeoutError:
            log.error("%d logging events still undelivered after %gs at shutdown", self.pending, grace)

    async def aclose(self, grace: float | None = 30.0) -> None:
        """Deliver what is queued, then stop the workers and the thread pool."""
        await self.drain(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._queue = [], None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
