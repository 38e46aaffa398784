"""Logging callbacks the tests load through the config, recording what they get.

Sync callbacks run in worker threads, so ``EVENTS`` is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.exceptions import HTTPException

from asgi_llm import CustomLogger

EVENTS: list[tuple[str, str, Any, Any]] = []  # (who, event, kwargs or model, response_obj)
_lock = threading.Lock()


def record(who: str, event: str, kwargs: Any, response: Any = None) -> None:
    with _lock:
        EVENTS.append((who, event, kwargs, response))


def events(who: str, event: str | None = None) -> list[tuple[str, str, Any, Any]]:
    with _lock:
        return [e for e in EVENTS if e[0] == who and (event is None or e[1] == event)]


def wait_for(who: str, event: str, count: int = 1, timeout: float = 5.0) -> list[tuple[str, str, Any, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(who, event)
        if len(found) >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"{who} got {len(events(who, event))} {event} events, expected {count}")


class SyncHandler(CustomLogger):
    """Only the sync methods, as seed 003's first example."""

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        record("sync", "pre", kwargs)

    def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("sync", "post", kwargs, response_obj)

    def log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("sync", "stream", kwargs, response_obj)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("sync", "success", kwargs, response_obj)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("sync", "failure", kwargs, response_obj)


class BothTwins(CustomLogger):
    """Defines both twins: only the async ones may run."""

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("twins", "sync-success", kwargs, response_obj)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("twins", "success", kwargs, response_obj)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("twins", "sync-failure", kwargs, response_obj)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("twins", "failure", kwargs, response_obj)

    async def async_log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        record("twins", "stream", kwargs, response_obj)


class Misbehaving(CustomLogger):
    """Raises on success, hangs on failure: neither may touch a request."""

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        raise RuntimeError("logging backend down")

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        await asyncio.sleep(3600)


class Slow(CustomLogger):
    """Takes a while, in both flavours."""

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        await asyncio.sleep(1.0)
        record("slow", "success", kwargs, response_obj)


class Blocker(CustomLogger):
    """A moderation hook that rejects the word "forbidden"."""

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: Any, call_type: str) -> None:
        if "forbidden" in str(data.get("messages")):
            raise HTTPException(status_code=403, detail="blocked by moderation")


blocker = Blocker()
sync_handler = SyncHandler()
both_twins = BothTwins()
misbehaving = Misbehaving()
slow = Slow()


def on_success(kwargs: Any, completion_response: Any, start_time: Any, end_time: Any) -> None:
    record("fn", "success", kwargs, completion_response)


async def on_success_async(kwargs: Any, completion_response: Any, start_time: Any, end_time: Any) -> None:
    record("afn", "success", kwargs, completion_response)


def on_failure(kwargs: Any, completion_response: Any, start_time: Any, end_time: Any) -> None:
    record("fn", "failure", kwargs, completion_response)


def on_input(kwargs: Any) -> None:
    record("fn", "input", kwargs)


def slow_sync_success(kwargs: Any, completion_response: Any, start_time: Any, end_time: Any) -> None:
    time.sleep(1.0)
    record("slow-sync", "success", kwargs, completion_response)


NOT_A_FUNCTION = 42
