"""Model routing: a request's ``model`` to one configured deployment.

Several ``model_list`` entries may share a ``model_name``; they are used in turn.
Only the config decides where traffic goes: nothing in a request can add a
deployment, an ``api_base`` or a key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from asgi_llm.config.load import Config, ModelEntry
from asgi_llm.observe.cost import prices_of
from asgi_llm.request.errors import GatewayError
from asgi_llm.shared.limits import deployment_id
from asgi_llm.upstream.scrub import Scrubber

OPENAI_BASE = "https://api.openai.com/v1"


def mask_key(key: str | None) -> str | None:
    """Enough of a key to tell keys apart in logs, never enough to use it."""
    if not key:
        return None
    return f"{key[:3]}...{key[-4:]}" if len(key) >= 20 else "****"


class Deployment:
    """One resolved ``model_list`` entry, ready to call."""

    __slots__ = ("api_base", "api_key", "counter_id", "label", "masked_key", "mock_response", "model", "model_info",
                 "model_name", "prices", "prompt", "provider", "retries", "scrubber", "stream_timeout", "timeout")

    def __init__(self, entry: ModelEntry, config: Config) -> None:
        params = entry.litellm_params
        settings = config.litellm_settings
        self.model_name = entry.model_name
        self.provider, _, self.model = params.model.partition("/")
        self.api_base = (params.api_base or OPENAI_BASE).rstrip("/")
        self.api_key = params.api_key
        self.timeout = params.timeout or settings.request_timeout
        self.stream_timeout = params.stream_timeout or settings.stream_timeout or self.timeout
        self.retries = max(0, params.max_retries if params.max_retries is not None else settings.num_retries)
        self.mock_response = params.mock_response
        self.model_info = entry.model_info
        self.prices = prices_of(entry.model_info)
        self.label = f"{self.provider}/{self.model}"  # what logs call the deployment
        self.masked_key = mask_key(self.api_key)
        self.counter_id = deployment_id(entry.model_name, params)  # its rate limit counters, in every instance
        self.scrubber = Scrubber([self.api_key])  # what an upstream's error text must not carry back
        prompt_keys = ("prompt_id", "prompt_variables", "prompt_label", "prompt_version", "langfuse_public_key",
                       "langfuse_secret_key", "langfuse_host")
        self.prompt = {k: getattr(params, k) for k in prompt_keys if getattr(params, k) is not None}

    def __repr__(self) -> str:  # never shows the key
        return f"Deployment({self.model_name!r} -> {self.provider}/{self.model} at {self.api_base})"


class Router:
    """Picks the deployment for a model name; unknown names get a 404 naming the choices."""

    def __init__(self, config: Config) -> None:
        groups: dict[str, list[Deployment]] = {}
        for entry in config.model_list:
            groups.setdefault(entry.model_name, []).append(Deployment(entry, config))
        self.names = list(groups)
        self._groups = groups
        self._single = {name: deps[0] for name, deps in groups.items() if len(deps) == 1}
        self._cycles: dict[str, Iterator[Deployment]] = {
            name: itertools.cycle(deps) for name, deps in groups.items() if len(deps) > 1
        }
        self._turns: dict[str, Iterator[int]] = {
            name: itertools.cycle(range(len(deps))) for name, deps in groups.items()
        }

    def find(self, model: str) -> Deployment | None:
        """The first deployment of ``model``, or None: for its settings, without taking a routing turn."""
        group = self._groups.get(model)
        return group[0] if group else None

    def group(self, model: str) -> list[Deployment]:
        """Every deployment of ``model``, starting at the next one in turn (to choose among by limits)."""
        group = self._groups.get(model)
        if not group:
            return []
        start = next(self._turns[model])
        return group[start:] + group[:start]

    def check(self, model: str | None) -> None:
        """404 naming the configured models unless ``model`` is one of them."""
        if model is None or model not in self._groups:
            raise self.unknown(model)

    def pick(self, model: str | None) -> Deployment:
        if model is not None:
            found = self._single.get(model)
            if found is not None:
                return found
            cycle = self._cycles.get(model)
            if cycle is not None:
                return next(cycle)
        raise self.unknown(model)

    def unknown(self, model: str | None) -> GatewayError:
        shown = ", ".join(self.names[:50]) + (", ..." if len(self.names) > 50 else "")
        return GatewayError(404, f"Model {model!r} is not configured on this gateway. Configured models: {shown}.",
                            param="model", code="model_not_found")
