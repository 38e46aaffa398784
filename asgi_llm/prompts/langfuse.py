"""Langfuse prompts (seed 002): ``langfuse/<model>`` takes its prompt from Langfuse.

``GET {host}/api/public/v2/prompts/{name}`` (``version``/``label`` as query),
Basic auth from the deployment's ``langfuse_public_key``/``langfuse_secret_key``/
``langfuse_host``, else ``LANGFUSE_PUBLIC_KEY``/``LANGFUSE_SECRET_KEY``/
``LANGFUSE_HOST``; never from a request body. A text prompt becomes one user
message, a chat prompt is used as is; either replaces the client's ``messages``.
``{{ name }}`` is filled from ``prompt_variables`` (unknown names stay, as Langfuse
does). The prompt config's ``model`` and params are used when present.

Prompts are cached per (host, name, version, label) for ``ttl`` seconds, then served
stale while one background refresh runs; a failed refresh keeps the stale copy. A
missing prompt gives 404; Langfuse unreachable with nothing cached gives 502.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from asgi_llm.hooks.prompt_manager import CustomPromptManagement
from asgi_llm.request.errors import GatewayError

log = logging.getLogger("asgi_llm.langfuse")
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
DEFAULT_HOST = "https://cloud.langfuse.com"
Key = tuple[str, str, str | None, str | None]


def compile_prompt(prompt: dict[str, Any], variables: dict[str, Any]) -> list[dict[str, Any]]:
    def fill(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return _VAR.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), text)

    body = prompt.get("prompt")
    if prompt.get("type") == "chat" or isinstance(body, list):
        return [{**m, "content": fill(m.get("content"))} for m in body or [] if isinstance(m, dict) and "role" in m]
    return [{"role": "user", "content": fill(body if isinstance(body, str) else "")}]


class LangfusePrompts(CustomPromptManagement):
    """The Langfuse prompt manager; see the module docstring."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession] | None = None, ttl: float = 60.0,
                 timeout: float = 10.0) -> None:
        self._session_getter = session
        self._own: aiohttp.ClientSession | None = None
        self.ttl = ttl
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.cache: dict[Key, tuple[dict[str, Any], float]] = {}
        self._refreshing: dict[Key, asyncio.Task[None]] = {}

    @property
    def integration_name(self) -> str:
        return "langfuse"

    def should_run_prompt_management(self, prompt_id: str | None, dynamic_callback_params: dict[str, Any]) -> bool:
        return False  # only selected by a langfuse/ model, never for a bare prompt_id

    def session(self) -> aiohttp.ClientSession:
        if self._session_getter is not None:
            return self._session_getter()
        if self._own is None:
            self._own = aiohttp.ClientSession()
        return self._own

    async def aclose(self) -> None:
        for task in self._refreshing.values():
            task.cancel()
        if self._own is not None:
            await self._own.close()

    async def fetch(self, key: Key, auth: str) -> dict[str, Any]:
        host, name, version, label = key
        query = {k: v for k, v in (("version", version), ("label", label)) if v is not None}
        url = f"{host}/api/public/v2/prompts/{quote(name, safe='')}"
        try:
            headers = {"authorization": auth}
            async with self.session().get(url, params=query, headers=headers, timeout=self.timeout) as resp:
                if resp.status == 404:
                    raise GatewayError(404, f"Langfuse has no prompt {name!r}" + "".join(
                        f" with {k} {v!r}" for k, v in query.items()) + ".", param="prompt_id",
                        code="prompt_not_found")
                if resp.status >= 400:
                    raise GatewayError(502, f"Langfuse answered {resp.status} for prompt {name!r}.",
                                       code="prompt_source_unavailable")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise GatewayError(502, f"Langfuse is unreachable for prompt {name!r} ({type(exc).__name__}).",
                               code="prompt_source_unavailable") from None
        if not isinstance(data, dict):
            raise GatewayError(502, f"Langfuse sent an unusable prompt {name!r}.", code="prompt_source_unavailable")
        self.cache[key] = (data, time.monotonic())
        return data

    async def _refresh(self, key: Key, auth: str) -> None:
        try:
            await self.fetch(key, auth)
        except GatewayError as exc:
            log.warning("Langfuse refresh of %r failed, serving the cached copy: %s", key[1], exc.message)
        finally:
            self._refreshing.pop(key, None)

    async def get(self, key: Key, auth: str) -> dict[str, Any]:
        cached = self.cache.get(key)
        if cached is None:
            return await self.fetch(key, auth)
        prompt, fetched = cached
        if time.monotonic() - fetched >= self.ttl and key not in self._refreshing:
            self._refreshing[key] = asyncio.ensure_future(self._refresh(key, auth))
        return prompt

    async def async_get_chat_completion_prompt(
            self, model: str, messages: list[Any], non_default_params: dict[str, Any], prompt_id: str | None,
            prompt_variables: dict[str, Any] | None, dynamic_callback_params: dict[str, Any],
    ) -> tuple[str, list[Any], dict[str, Any]]:
        params = dynamic_callback_params
        public = params.get("langfuse_public_key") or os.environ.get("LANGFUSE_PUBLIC_KEY")
        secret = params.get("langfuse_secret_key") or os.environ.get("LANGFUSE_SECRET_KEY")
        host = (params.get("langfuse_host") or os.environ.get("LANGFUSE_HOST") or DEFAULT_HOST).rstrip("/")
        if not prompt_id:
            raise GatewayError(400, f"Model 'langfuse/{model}' needs a prompt_id.", param="prompt_id",
                               code="missing_prompt_id")
        if not public or not secret:
            raise GatewayError(400, "Langfuse prompts are not configured on this gateway (no langfuse_public_key/"
                               "langfuse_secret_key or LANGFUSE_* environment variables).", param="model",
                               code="prompt_source_not_configured")
        version = params.get("prompt_version")
        key = (host, prompt_id, None if version is None else str(version), params.get("prompt_label"))
        token = base64.b64encode(f"{public}:{secret}".encode()).decode()
        prompt = await self.get(key, f"Basic {token}")
        found = prompt.get("config")
        config: dict[str, Any] = found if isinstance(found, dict) else {}
        chosen: str = config["model"] if isinstance(config.get("model"), str) else model
        extra = {k: v for k, v in config.items() if k != "model"}
        return chosen, compile_prompt(prompt, prompt_variables or {}), {**non_default_params, **extra}
