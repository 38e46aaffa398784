"""``CustomLogger``: the hook API users subclass, with LiteLLM's names and signatures.

A LiteLLM hook file works with only its imports changed::

    from asgi_llm import CustomLogger, UserAPIKeyAuth, DualCache
    from starlette.exceptions import HTTPException

Every method is a no-op here; the gateway calls only those a callback's class (or
one of its parents) overrides, so an unused hook costs nothing. ``overrides`` is
how the layers find them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.hooks.cache import DualCache


class CustomLogger:
    """Base class of every callback: call hooks, streaming hooks, prompt and logging hooks."""

    # ---- call hooks (proxy) ----
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any] | str | Exception | None:
        return None

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> Any:
        return None

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        return None

    async def async_post_call_failure_hook(self, request_data: dict[str, Any], original_exception: Exception,
                                           user_api_key_dict: UserAPIKeyAuth) -> Any:
        return None

    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> Any:
        return None

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: UserAPIKeyAuth,
                                                      response: AsyncIterator[Any],
                                                      request_data: dict[str, Any]) -> AsyncGenerator[Any, None]:
        async for item in response:
            yield item

    # ---- prompt management (a manager returns the three values, all applied) ----
    def get_chat_completion_prompt(self, model: str, messages: list[Any], non_default_params: dict[str, Any],
                                   prompt_id: str | None, prompt_variables: dict[str, Any] | None,
                                   dynamic_callback_params: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
        return model, messages, non_default_params

    async def async_get_chat_completion_prompt(
            self, model: str, messages: list[Any], non_default_params: dict[str, Any], prompt_id: str | None,
            prompt_variables: dict[str, Any] | None, dynamic_callback_params: dict[str, Any],
    ) -> tuple[str, list[Any], dict[str, Any]]:
        return self.get_chat_completion_prompt(model, messages, non_default_params, prompt_id, prompt_variables,
                                               dynamic_callback_params)

    # ---- logging hooks ----
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        pass

    def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        pass

    async def async_log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    async def async_log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        pass


def overrides(callback: object, name: str) -> bool:
    """True when ``callback``'s class (or a parent below ``CustomLogger``) defines ``name``."""
    mine = getattr(type(callback), name, None)
    return mine is not None and mine is not getattr(CustomLogger, name, None)


def with_hook(callbacks: list[Any], name: str) -> list[Any]:
    """The callbacks that override ``name``, in config order."""
    return [cb for cb in callbacks if overrides(cb, name)]


def get_formatted_prompt(data: dict[str, Any], call_type: str) -> str:
    """LiteLLM's ``litellm.utils.get_formatted_prompt``: the request's text, joined."""
    parts: list[str] = []
    if call_type == "completion":
        for message in data.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    else:
        value = data.get("prompt", data.get("input", ""))
        parts += value if isinstance(value, list) and all(isinstance(v, str) for v in value) else [str(value)]
    return " ".join(parts)
