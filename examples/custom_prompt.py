"""Seed 001 (custom prompt management), on asgi-llm: only the imports changed."""

from typing import List, Optional, Tuple

from asgi_llm import AllMessageValues, CustomPromptManagement, StandardCallbackDynamicParams


class MyCustomPromptManagement(CustomPromptManagement):
    def get_chat_completion_prompt(
        self,
        model: str,
        messages: List[AllMessageValues],
        non_default_params: dict,
        prompt_id: str,
        prompt_variables: Optional[dict],
        dynamic_callback_params: StandardCallbackDynamicParams,
    ) -> Tuple[str, List[AllMessageValues], dict]:
        """
        Retrieve and format prompts based on prompt_id.

        Returns:
        - model: The model to use
        - messages: The formatted messages
        - non_default_params: Optional parameters like temperature
        """
        # Example matching the diagram: Add system message for prompt_id "1234"
        if prompt_id == "1234":
            # Prepend system message while preserving existing messages
            new_messages = [
                {"role": "system", "content": "Be a good Bot!"},
            ] + messages
            return model, new_messages, non_default_params

        # Default: Return original messages if no prompt_id match
        return model, messages, non_default_params


prompt_management = MyCustomPromptManagement()
