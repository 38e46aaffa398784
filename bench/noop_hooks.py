"""The hook the bench's hook scenario loads: an ``async_pre_call_hook`` that does nothing."""

from typing import Any

from asgi_llm import CustomLogger, DualCache, UserAPIKeyAuth


class NoopHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any]:
        return data


noop = NoopHook()
