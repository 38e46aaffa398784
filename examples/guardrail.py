"""An output guardrail as a streaming iterator hook: banned words never reach the client.

The hook holds back the last ``len(longest banned word) - 1`` characters of the text
so far, so a banned word split across chunks is still caught: the held text is
checked again once the next chunk arrives, and only text that can no longer start
a banned word is released. Banned words are replaced by asterisks.

    litellm_settings:
      callbacks: guardrail.banned_words
"""

import copy
import re
from collections.abc import AsyncIterator
from typing import Any

from asgi_llm import CustomLogger, UserAPIKeyAuth
from asgi_llm.hooks.response import unwrap


class BannedWords(CustomLogger):
    def __init__(self, words: list[str]) -> None:
        self.pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
        self.hold = max(len(w) for w in words) - 1

    def clean(self, text: str) -> str:
        return self.pattern.sub(lambda m: "*" * len(m.group(0)), text)

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: AsyncIterator[Any], request_data: dict
    ) -> AsyncIterator[Any]:
        pending = ""
        last: dict[str, Any] | None = None
        async for chunk in response:
            data = unwrap(chunk)
            choices = data.get("choices") or []
            delta = choices[0].get("delta", {}) if choices else {}
            if not isinstance(delta.get("content"), str):
                if choices and choices[0].get("finish_reason") and pending and last is not None:
                    yield self.flush(last, pending)  # the rest of the text goes before the finish
                    pending = ""
                yield data  # role, finish and usage chunks carry no text
                continue
            pending = self.clean(pending + delta["content"])
            release, pending = pending[: max(0, len(pending) - self.hold)], pending[max(0, len(pending) - self.hold):]
            last = data
            out = copy.deepcopy(data)
            out["choices"][0]["delta"]["content"] = release
            yield out
        if pending and last is not None:  # the end: nothing more can complete a banned word
            yield self.flush(last, pending)

    def flush(self, template: dict[str, Any], pending: str) -> dict[str, Any]:
        out = copy.deepcopy(template)
        out["choices"][0]["delta"]["content"] = self.clean(pending)
        return out


banned_words = BannedWords(["swordfish", "password"])
