"""The hook the bench's hook scenario loads: an ``async_pre_call_hook`` that does nothing."""

from typing import Any

from asgi_llm import CustomLogger, DualCache, UserAPIKeyAuth


class NoopHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any]:
        return data


noop = NoopHook()


class StreamAndModeration(CustomLogger):
    """A per-chunk streaming hook and a moderation hook that do nothing; the moderation hook
    sleeps ``BENCH_MODERATION_DELAY`` seconds (0 by default) to measure time to first byte."""

    def __init__(self) -> None:
        import os

        self.delay = float(os.environ.get("BENCH_MODERATION_DELAY", "0"))

    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> None:
        return None

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> None:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)


stream_and_moderation = StreamAndModeration()


class ChunkOnly(CustomLogger):
    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> None:
        return None


class ModerationOnly(CustomLogger):
    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> None:
        return None


chunk_only, moderation_only = ChunkOnly(), ModerationOnly()


class SuccessLogger(CustomLogger):
    """One async success callback that reads what a real logger would (the summary), nothing more."""

    def __init__(self) -> None:
        self.calls = 0

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.calls += kwargs["standard_logging_object"]["total_tokens"] >= 0


success_logger = SuccessLogger()


class FullStack(SuccessLogger):
    """Every hook a no-op: pre-call, moderation, per-chunk streaming, and the success callback."""

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any]:
        return data

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> None:
        return None

    async def async_post_call_streaming_hook(self, user_api_key_dict: UserAPIKeyAuth, response: str) -> None:
        return None


full_stack = FullStack()
