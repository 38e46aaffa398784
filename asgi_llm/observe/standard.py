"""The ``standard_logging_object``: one flat summary of a call, with LiteLLM's field names.

``id``, ``status`` (success/failure) and ``status_code``, ``model`` (the deployment's),
``model_group`` (the name the client asked for), tokens (``usage_estimated`` when
counted from text), ``response_cost``, timings (epoch seconds ``startTime``,
``endTime``, ``completionStartTime``; durations in seconds ``response_time``,
``upstream_time``, ``overhead_time``, ``time_to_first_token``), ``attempts``,
``metadata``, ``messages``, ``model_parameters``, and for failures
``error_str`` and ``error_information`` (``error_class``, ``error_code``, ``error_message``).
The answer itself is not copied in: it is the callback's ``response_obj`` (and
``complete_streaming_response``), parsed or assembled only when a callback reads it.
"""

from __future__ import annotations

from typing import Any

from asgi_llm.observe.record import CallRecord


def _error_class(rec: CallRecord, error: BaseException | None) -> str:
    if error is not None:
        return type(error).__name__
    return "ClientDisconnected" if rec.trace.client_gone else f"HTTP{rec.status}"


def standard_logging_object(rec: CallRecord, kwargs: dict[str, Any], failed: bool) -> dict[str, Any]:
    error = rec.error if failed else None
    end = rec.end if rec.end is not None else rec.start
    total = end - rec.start
    started, ended = rec.trace.started, rec.trace.ended
    upstream = ended - started if started is not None and ended is not None else None
    ttft = rec.first_byte - rec.start if rec.first_byte is not None else None
    prompt = rec.prompt_tokens or 0
    params = kwargs["litellm_params"]
    message = None if not failed else str(error) if error is not None else (
        "The client closed the connection." if rec.trace.client_gone else f"HTTP {rec.status}")
    return {
        "id": rec.call_id,
        "call_type": kwargs["call_type"],
        "stream": kwargs["stream"],
        "status": "failure" if failed else "success",
        "status_code": 499 if rec.trace.client_gone else rec.status,
        "model": kwargs["model"],
        "model_group": params["metadata"]["model_group"],
        "custom_llm_provider": params["custom_llm_provider"],
        "api_base": params["api_base"],
        "prompt_tokens": prompt,
        "completion_tokens": rec.completion_tokens,
        "total_tokens": prompt + rec.completion_tokens,
        "usage_estimated": rec.estimated,
        "response_cost": rec.cost,
        "startTime": rec.wall,
        "endTime": rec.wall + total,
        "completionStartTime": rec.wall + ttft if ttft is not None else None,
        "response_time": total,
        "upstream_time": upstream,
        "overhead_time": total - upstream if upstream is not None else total,
        "time_to_first_token": ttft,
        "attempts": rec.trace.attempts,
        "attempted": rec.trace.failed,  # the router's failed attempts before the answer: group, deployment, status
        "metadata": params["metadata"],
        "end_user": params["metadata"]["user_api_end_user_id"],
        "cache_hit": rec.trace.cache_hit,
        "messages": kwargs["messages"],
        "model_parameters": kwargs["optional_params"],
        "error_str": message,
        "error_information": {"error_class": _error_class(rec, error), "error_code": rec.status,
                              "error_message": message} if failed else None,
    }
