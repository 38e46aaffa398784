"""Seed 000 (custom prompt management quick start), on asgi-llm: only the imports changed."""

from typing import List, Optional, Tuple

from asgi_llm import AllMessageValues, CustomLogger, PromptManagementBase, StandardCallbackDynamicParams


class CustomPromptManagement(CustomLogger, PromptManagementBase):
    async def async_get_chat_completion_prompt(
        self,
        model: str,
        messages: List[AllMessageValues],
        non_default_params: dict,
        prompt_id: str,
        prompt_variables: Optional[dict],
        dynamic_callback_params: StandardCallbackDynamicParams,
    ) -> Tuple[str, List[AllMessageValues], dict]:
        """
        Returns:
        - model: str - the model to use (can be pulled from prompt management tool)
        - messages: List[AllMessageValues] - the messages to use (can be pulled from prompt management tool)
        - non_default_params: dict - update with any optional params (e.g. temperature, max_tokens, etc.) to use
          (can be pulled from prompt management tool)
        """
        return model, messages, non_default_params

    @property
    def custom_logger_name(self) -> str:
        return "custom-prompt-management"


proxy_prompt_management_instance = CustomPromptManagement()
