"""``CallRecord``: what the logging layer saw of one call, and the callback ``kwargs`` built from it.

The record holds the served status, timings (``perf_counter``), the served body
parts, the error (``Errors`` leaves it in ``scope["state"]``), its ``UpstreamTrace``
(the terminal app fills it in),
and the tokens and cost once settled. ``kwargs`` (seed 003's ``model_call_details``)
and the ``standard_logging_object`` are built from it off the response path, in the
logging queue's workers.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import datetime
from typing import Any

import msgspec

from asgi_llm.hooks.custom_logger import get_formatted_prompt
from asgi_llm.observe.cost import cost_of, estimate_tokens, reply_usage, response_text, usage_tokens
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.errors import ERROR_KEY
from asgi_llm.request.routes import Route
from asgi_llm.sse.assemble import assemble_stream
from asgi_llm.types import Scope
from asgi_llm.upstream.trace import UpstreamTrace

_decode = msgspec.json.decode
_fromtimestamp = datetime.fromtimestamp


def new_call_id() -> str:
    """128 random bits as hex: unique across workers and instances, and not guessable from another id
    (ids reach clients in ``x-asgi-llm-call-id`` and logs)."""
    return os.urandom(16).hex()


class CallRecord:
    """One call as the client saw it, with its upstream trace; see the module docstring."""

    __slots__ = ("_response", "call_id", "completion_tokens", "cost", "end", "estimated", "first_byte", "prompt_tokens",
                 "route", "scope", "served", "sse", "start", "status", "trace", "wall")

    def __init__(self, route: Route, scope: Scope, want_usage: bool = False, keep_raw: bool = False) -> None:
        self.trace = UpstreamTrace(want_usage, keep_raw)  # what the terminal app tells us of the upstream call
        self.call_id = new_call_id()
        self.route = route
        self.scope = scope
        self.start = time.perf_counter()
        self.wall = time.time()
        self.status = 0
        self.sse = False
        self.first_byte: float | None = None
        self.end: float | None = None
        self.served: list[bytes] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens = 0
        self.estimated = False
        self.cost: float | None = None
        self._response: Any = None

    @property
    def ctx(self) -> RequestContext | None:
        return get_context(self.scope)

    @property
    def error(self) -> BaseException | None:
        state = self.scope.get("state")
        return state.get(ERROR_KEY) if state else None

    @property
    def failed(self) -> bool:
        return self.status >= 400 or self.trace.client_gone or self.error is not None

    def at(self, moment: float | None) -> datetime | None:
        return None if moment is None else datetime.fromtimestamp(self.wall + moment - self.start)

    def response(self, raw: bytes | None = None) -> Any:
        """What was served (or ``raw``, the body about to be), as JSON: the body, or a stream
        assembled into one completion. Made once."""
        if self._response is None and (raw is not None or self.served):
            raw = raw if raw is not None else b"".join(self.served)
            if self.sse:
                self._response = assemble_stream(raw)
            else:
                try:
                    self._response = _decode(raw)
                except msgspec.DecodeError:
                    self._response = raw.decode("utf-8", "replace")
        return self._response

    def complete_response(self) -> Any:
        """What callbacks get as the response: ``response()``, and for a stream, the assembled
        completion carries the call's usage: the upstream's (even when the client did not ask for
        the usage chunk), else the estimate, flagged ``"estimated": true``."""
        response = self.response()
        if self.sse and isinstance(response, dict) and response.get("usage") is None and self.prompt_tokens is not None:
            if isinstance(self.trace.usage, dict):
                response["usage"] = self.trace.usage
            else:
                prompt, completion = self.prompt_tokens, self.completion_tokens
                response["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion, "estimated": self.estimated}
        return response

    def settle_usage(self, body: bytes | None = None) -> None:
        """Tokens and cost, once: from the upstream's ``usage`` (a reply's or a stream's usage chunk),
        else the served body's, else an estimate."""
        if self.prompt_tokens is not None:
            return
        found = usage_tokens(self.trace.usage)  # what the upstream billed, read as it passed
        if found is not None:
            self._settle(found)
            return
        raw = body if body is not None or self.sse else b"".join(self.served)
        if not self.sse and raw:  # e.g. the mock, or an observer without a trace
            try:
                found = usage_tokens(reply_usage(raw))
            except (msgspec.DecodeError, UnicodeDecodeError):
                found = None
        if found is None:  # no usage from the upstream: estimate from the text (README, Cost)
            ctx = self.ctx
            asked = get_formatted_prompt(ctx.body, ctx.call_type) if ctx is not None and ctx.body else ""
            answer = self.response(raw or None)
            found, self.estimated = (estimate_tokens(asked), estimate_tokens(response_text(answer))), True
        self._settle(found)

    def _settle(self, found: tuple[int, int]) -> None:
        self.prompt_tokens, self.completion_tokens = found
        dep = self.trace.deployment
        if self.trace.cache_hit:
            self.cost = 0.0  # answered from the cache: nothing was billed
        else:
            self.cost = cost_of(dep.prices, *found) if dep is not None else None

    def kwargs(self, event: str) -> dict[str, Any]:
        """Seed 003's ``kwargs`` for ``event`` (pre_api_call, post_api_call, stream_event,
        successful_api_call, failed_api_call)."""
        ctx = get_context(self.scope)
        body = ctx.body if ctx is not None and ctx.body is not None else _EMPTY
        dep, sent, auth = self.trace.deployment, self.trace.sent, ctx.auth if ctx is not None else None
        source = sent if sent is not None else body
        metadata = {  # one presized literal; the body's own metadata goes under it, when there is some
            "user_api_key_hash": auth.api_key if auth is not None else None,
            "user_api_key_alias": auth.key_alias if auth is not None else None,
            "user_api_key_user_id": auth.user_id if auth is not None else None,
            "user_api_key_team_id": auth.team_id if auth is not None else None,
            "user_api_end_user_id": ctx.end_user if ctx is not None else None,
            "model_group": dep.model_name if dep is not None else body.get("model"),
            "deployment": dep.label if dep is not None else None}
        given = body.get("metadata")
        if given and type(given) is dict:
            metadata = {**given, **metadata}
        raw, call_id = self.trace.raw, self.call_id
        kwargs: dict[str, Any] = {
            "model": dep.model if dep is not None else body.get("model"),
            "messages": _prompt_of(body),
            "optional_params": {k: v for k, v in source.items() if k not in _NOT_OPTIONAL},
            "litellm_params": {"metadata": metadata, "litellm_call_id": call_id, "api_base": dep.api_base,
                               "custom_llm_provider": dep.provider, "model_info": dep.model_info} if dep else {
                "metadata": metadata, "litellm_call_id": call_id, "api_base": None, "custom_llm_provider": None,
                "model_info": {}},
            "litellm_call_id": call_id,
            "call_type": self.route.litellm_call_type,
            "stream": ctx.stream if ctx is not None else False,
            "start_time": _fromtimestamp(self.wall),
            "end_time": self.at(self.end),
            "input": _prompt_of(source),
            "api_key": dep.masked_key if dep is not None else None,
            "additional_args": {"complete_input_dict": sent, "api_base": self.trace.url,
                                "attempts": self.trace.attempts, "attempted": self.trace.failed},
            "log_event_type": event,
            "cache_hit": self.trace.cache_hit,
            "response_cost": self.cost,
            "original_response": raw.decode("utf-8", "replace") if raw is not None else None,
        }
        if event == "successful_api_call" and self.sse:
            kwargs["complete_streaming_response"] = None  # the caller sets it (made lazily)
        if event == "failed_api_call":
            error = self.error
            kwargs["exception"] = error
            kwargs["traceback_exception"] = "".join(traceback.format_exception(error)) if error else None
        return kwargs


_EMPTY: dict[str, Any] = {}
_NOT_OPTIONAL = frozenset({"model", "messages", "prompt", "input", "metadata"})


def _prompt_of(body: dict[str, Any]) -> Any:
    found = body.get("messages")
    return found if found is not None else body.get("prompt", body.get("input"))
