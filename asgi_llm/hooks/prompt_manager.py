"""Prompt management: the manager API (LiteLLM's) and how the gateway finds managers.

A manager is any callback that overrides ``get_chat_completion_prompt`` or
``async_get_chat_completion_prompt``; it returns ``(model, messages,
non_default_params)`` and the gateway applies all three. The async one is used when
overridden, else the sync one runs in a worker thread so the event loop never
blocks. ``should_run_prompt_management`` lets a manager decline a ``prompt_id``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from asgi_llm.hooks.custom_logger import CustomLogger, overrides

AllMessageValues = dict[str, Any]  # LiteLLM's names, for hook files that import them
StandardCallbackDynamicParams = dict[str, Any]


class PromptManagementBase:
    """LiteLLM's mixin; here only a marker (its abstract methods have defaults below)."""


class CustomPromptManagement(CustomLogger, PromptManagementBase):
    """Base class of prompt managers (``litellm.integrations.custom_prompt_management``)."""

    @property
    def integration_name(self) -> str:
        return "custom-prompt-management"

    def should_run_prompt_management(self, prompt_id: str | None,
                                     dynamic_callback_params: dict[str, Any]) -> bool:
        return True


_ASYNC: dict[type, bool] = {}  # per manager class: does it override the async method?


def is_manager(callback: object) -> bool:
    return overrides(callback, "get_chat_completion_prompt") or overrides(callback, "async_get_chat_completion_prompt")


def manager_name(manager: object) -> str | None:
    """The name a ``<name>/<model>`` model selects it by: ``custom_logger_name``, else ``integration_name``."""
    for attr in ("custom_logger_name", "integration_name"):
        value = getattr(manager, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def accepts(manager: Any, prompt_id: str | None, params: dict[str, Any]) -> bool:
    check = getattr(manager, "should_run_prompt_management", None)
    return bool(check(prompt_id=prompt_id, dynamic_callback_params=params)) if callable(check) else True


async def run_manager(manager: Any, model: str, messages: list[Any], non_default_params: dict[str, Any],
                      prompt_id: str | None, prompt_variables: dict[str, Any] | None,
                      dynamic_callback_params: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    """Call the manager the way it was written: async if overridden, else sync in a thread."""
    args = (model, messages, non_default_params, prompt_id, prompt_variables, dynamic_callback_params)
    kind = type(manager)
    is_async = _ASYNC.get(kind)
    if is_async is None:
        is_async = _ASYNC[kind] = overrides(manager, "async_get_chat_completion_prompt")
    if is_async:
        result = await manager.async_get_chat_completion_prompt(*args)
    else:
        result = await asyncio.to_thread(functools.partial(manager.get_chat_completion_prompt, *args))
    if not (isinstance(result, tuple | list) and len(result) == 3):
        raise TypeError(f"{type(manager).__name__} must return (model, messages, non_default_params)")
    new_model, new_messages, new_params = result
    return new_model, new_messages if type(new_messages) is list else list(new_messages), new_params or {}
