"""Seed 004's call hooks (LiteLLM docs, "Modify / Reject Incoming Requests"), on asgi-llm.

Only the imports changed from the LiteLLM version; the triggers below make each
documented outcome reachable from one file. ``hooks_config.yaml`` loads it as
``custom_callbacks.proxy_handler_instance`` (resolved beside the config file).
"""

from typing import Literal

from starlette.exceptions import HTTPException

from asgi_llm import CustomLogger, DualCache, UserAPIKeyAuth, get_formatted_prompt


class MyCustomHandler(CustomLogger):
    def __init__(self) -> None:
        self.failures: list[str] = []

    #### CALL HOOKS - proxy only ####
    async def async_pre_call_hook(
        self,
        user_api_key_dict: UserAPIKeyAuth,
        cache: DualCache,
        data: dict,
        call_type: Literal["completion", "text_completion", "embeddings", "image_generation", "moderation",
                           "audio_transcription"],
    ) -> dict | str:
        formatted_prompt = get_formatted_prompt(data=data, call_type=call_type)
        if "Hello world" in formatted_prompt:  # reject with a message, returned as a normal answer
            return "This is an invalid response"
        if "forbidden topic" in formatted_prompt:  # reject by raising
            raise HTTPException(status_code=400, detail={"error": "Violated content safety policy"})
        if data["model"] == "blocked-model":
            raise HTTPException(status_code=403, detail="This model is blocked")
        if data["model"] == "gpt-3.5-turbo":  # modify: the seed's quick start
            data["model"] = "my-new-model"
        data["metadata"]["checked_by"] = "MyCustomHandler"  # state for later hooks; never sent upstream
        return data

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
    ) -> HTTPException | None:
        self.failures.append(type(original_exception).__name__)
        status = getattr(original_exception, "status_code", None)
        if status == 403:  # a friendlier message for the caller
            return HTTPException(status_code=403,
                                 detail={"error": {"message": "Blocked by policy: ask your admin for access."}})
        if status == 400 and request_data.get("model") == "strict-model":
            raise HTTPException(status_code=400, detail={"message": "strict-model refused this request"})
        return None


proxy_handler_instance = MyCustomHandler()
