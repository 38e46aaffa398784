"""Logging sinks: which function gets which logging event, with which arguments.

Events: ``pre`` (before each upstream attempt), ``post`` (the upstream's answer is
in), ``stream`` (each served chunk), ``success`` and ``failure`` (once per call).

From a ``CustomLogger``: ``log_pre_api_call(model, messages, kwargs)`` and
``log_post_api_call`` / ``log_stream_event`` / ``log_success_event`` /
``log_failure_event(kwargs, response_obj, start_time, end_time)``. For each event a
class gets its ``async_`` twin when it overrides it, else the sync method when it
overrides that, never both: no double logging.

Plain functions (``litellm_settings.success_callback``, ``failure_callback``,
``input_callback``, or passed in code): ``(kwargs, completion_response,
start_time, end_time)``, and ``(kwargs)`` for ``input_callback``; ``async def``
ones are awaited, others run in a thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from asgi_llm.hooks.custom_logger import overrides

Style = Literal["pre", "input", "std"]
EVENTS = ("pre", "post", "stream", "success", "failure")
_METHODS = {"pre": "log_pre_api_call", "post": "log_post_api_call", "stream": "log_stream_event",
            "success": "log_success_event", "failure": "log_failure_event"}


class Sink:
    """One function to call for one event."""

    __slots__ = ("fn", "is_async", "name", "style")

    def __init__(self, fn: Callable[..., Any], style: Style, name: str) -> None:
        self.fn = fn
        self.style = style
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)

    def args(self, kwargs: dict[str, Any], response: Any, start: Any, end: Any) -> tuple[Any, ...]:
        if self.style == "pre":
            return kwargs.get("model"), kwargs.get("messages"), kwargs
        if self.style == "input":
            return (kwargs,)
        return kwargs, response, start, end


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class LogSinks:
    """The sinks for each event, in config order (callbacks first, then plain functions)."""

    def __init__(self, callbacks: Sequence[object] = (), *, success: Sequence[Callable[..., Any]] = (),
                 failure: Sequence[Callable[..., Any]] = (), inputs: Sequence[Callable[..., Any]] = ()) -> None:
        self.by_event: dict[str, list[Sink]] = {event: [] for event in EVENTS}
        for callback in callbacks:
            for event, method in _METHODS.items():
                style: Style = "pre" if event == "pre" else "std"
                for name in (f"async_{method}", method):  # the async twin wins
                    if overrides(callback, name):
                        self.by_event[event].append(Sink(getattr(callback, name), style,
                                                         f"{type(callback).__name__}.{name}"))
                        break
        for event, functions, fn_style in (("success", success, "std"), ("failure", failure, "std"),
                                           ("pre", inputs, "input")):
            for fn in functions:
                if not callable(fn):
                    raise TypeError(f"{event} callback {fn!r} is not callable")
                self.by_event[event].append(Sink(fn, fn_style, _describe(fn)))  # type: ignore[arg-type]
        self.pre, self.post, self.stream, self.success, self.failure = (self.by_event[e] for e in EVENTS)

    def __bool__(self) -> bool:
        return any(self.by_event.values())
