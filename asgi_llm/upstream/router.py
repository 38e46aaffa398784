"""Model routing: a request's ``model`` to one configured deployment.

Several ``model_list`` entries may share a ``model_name`` (a group). ``choose`` picks
one by ``router_settings.routing_strategy``, skipping deployments that are cooling
down (``upstream.cooldowns``) and, for a retry, those that just failed:

- ``simple-shuffle`` (the default): at random, weighted by ``weight``, else ``rpm``, else
  ``tpm``; a group with none of them is used in turn (an even spread without dice);
- ``least-busy``: the fewest calls in flight (in this worker);
- ``latency-based-routing``: the lowest recent latency (the time to the answer's first
  byte: the whole call, or a stream's first token); one never measured goes first;
- ``usage-based-routing`` (also ``-v2``): the fewest tokens this minute against its ``tpm``.

Only the config decides where traffic goes: nothing in a request can add a
deployment, an ``api_base`` or a key.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Collection, Iterator

from asgi_llm.config.load import Config, ModelEntry
from asgi_llm.config.providers import default_base, default_key
from asgi_llm.observe.cost import prices_of
from asgi_llm.request.errors import GatewayError
from asgi_llm.shared.limits import deployment_id
from asgi_llm.shared.redis_link import RedisLink
from asgi_llm.upstream.cooldowns import Cooldowns
from asgi_llm.upstream.scrub import Scrubber


def mask_key(key: str | None) -> str | None:
    """Enough of a key to tell keys apart in logs, never enough to use it."""
    if not key:
        return None
    return f"{key[:3]}...{key[-4:]}" if len(key) >= 20 else "****"


class Deployment:
    """One resolved ``model_list`` entry, ready to call."""

    __slots__ = ("ad_token", "api_base", "api_key", "api_version", "counter_id", "inflight", "label", "latency",
                 "masked_key", "mock_response", "model", "model_info", "model_name", "prices", "prompt", "provider",
                 "retries", "rpm", "scrubber", "stream_timeout", "timeout", "tpm", "used", "weight")

    def __init__(self, entry: ModelEntry, config: Config) -> None:
        params = entry.litellm_params
        settings = config.litellm_settings
        self.model_name = entry.model_name
        self.provider, _, self.model = params.model.partition("/")
        self.api_base = (params.api_base or default_base(self.provider) or "").rstrip("/")
        self.api_key = params.api_key or default_key(self.provider)
        self.api_version = params.api_version
        self.ad_token = params.azure_ad_token
        self.timeout = params.timeout or settings.request_timeout
        self.stream_timeout = params.stream_timeout or settings.stream_timeout or self.timeout
        default = config.router_settings.num_retries  # the router's default, over litellm_settings'
        self.retries = max(0, params.max_retries if params.max_retries is not None else
                           default if default is not None else settings.num_retries)
        self.mock_response = params.mock_response
        self.model_info = entry.model_info
        self.prices = prices_of(entry.model_info)
        self.label = f"{self.provider}/{self.model}"  # what logs call the deployment
        self.masked_key = mask_key(self.api_key)
        self.counter_id = deployment_id(entry.model_name, params)  # its rate limit counters, in every instance
        self.weight, self.rpm, self.tpm = params.weight, params.rpm, params.tpm
        self.inflight = 0  # calls in flight in this worker (least-busy)
        self.latency = 0.0  # recent time to the first byte, seconds (latency-based); 0: never measured
        self.used = (0, 0)  # (minute, tokens) in this worker (usage-based)
        self.scrubber = Scrubber([self.api_key, self.ad_token])  # what an upstream's error text must not carry back
        prompt_keys = ("prompt_id", "prompt_variables", "prompt_label", "prompt_version", "langfuse_public_key",
                       "langfuse_secret_key", "langfuse_host")
        self.prompt = {k: getattr(params, k) for k in prompt_keys if getattr(params, k) is not None}

    def __repr__(self) -> str:  # never shows the key
        return f"Deployment({self.model_name!r} -> {self.provider}/{self.model} at {self.api_base})"


class Router:
    """Picks the deployment for a model name; unknown names get a 404 naming the choices."""

    def __init__(self, config: Config, link: RedisLink | None = None) -> None:
        groups: dict[str, list[Deployment]] = {}
        for entry in config.model_list:
            groups.setdefault(entry.model_name, []).append(Deployment(entry, config))
        self.names = list(groups)
        self._groups = groups
        self.config = config
        settings = config.router_settings
        self.strategy = settings.routing_strategy.removesuffix("-v2")
        self.cooldowns = Cooldowns(settings.allowed_fails, settings.cooldown_time,
                                   enabled=not settings.disable_cooldowns, link=link)
        # groups of several: only they retry elsewhere and cool deployments down
        self.several = frozenset(name for name, deps in groups.items() if len(deps) > 1)
        self.cooldowns.watch(d.counter_id for name in self.several for d in groups[name])
        self._weights = {name: [float(d.weight or d.rpm or d.tpm or 0) for d in deps] for name, deps in groups.items()
                         if len(deps) > 1 and any(d.weight or d.rpm or d.tpm for d in deps)}
        self._single = {name: deps[0] for name, deps in groups.items() if len(deps) == 1}
        self._turns: dict[str, Iterator[int]] = {
            name: itertools.cycle(range(len(deps))) for name, deps in groups.items()
        }

    def find(self, model: str) -> Deployment | None:
        """The first deployment of ``model``, or None: for its settings, without taking a routing turn."""
        group = self._groups.get(model)
        return group[0] if group else None

    def group(self, model: str) -> list[Deployment]:
        """Every deployment of ``model``, configured order."""
        return self._groups.get(model, [])

    def ordered(self, model: str) -> list[Deployment]:
        """``model``'s usable deployments, the strategy's choice first, the rest in turn after it (what
        deployment limits choose among)."""
        group = self._groups.get(model)
        if not group:
            return []
        first = self.choose(model, ())
        if first is None:
            return []
        rest = [d for d in group if d is not first and not self.cooldowns.cooling(d.counter_id)]
        return [first, *rest]

    def choose(self, model: str, exclude: Collection[Deployment]) -> Deployment | None:
        """The deployment for the next attempt at ``model``: not cooling down, not in ``exclude`` when
        another one is usable; None when every deployment of the group is cooling down."""
        group = self._groups.get(model)
        if group is None:
            raise self.unknown(model)
        if len(group) == 1:
            return group[0]  # a group of one never cools down
        if not exclude and not self.cooldowns.until:  # the usual call: every deployment usable
            fresh = group
        else:
            cooling = self.cooldowns.cooling
            usable = [d for d in group if not cooling(d.counter_id)]
            if not usable:
                return None
            fresh = [d for d in usable if d not in exclude] or usable
        if len(fresh) == 1:
            return fresh[0]
        strategy = self.strategy
        if strategy == "simple-shuffle":
            weights = self._weights.get(model)
            if weights is None:
                turn = next(self._turns[model])
                return fresh[turn % len(fresh)]
            return random.choices(fresh, [weights[group.index(d)] for d in fresh])[0]
        if strategy == "least-busy":
            turn = next(self._turns[model]) % len(fresh)  # ties go round
            return min(fresh[turn:] + fresh[:turn], key=lambda d: d.inflight)
        if strategy == "latency-based-routing":
            return min(fresh, key=lambda d: d.latency)
        minute = int(time.time() // 60)  # usage-based-routing
        return min(fresh, key=lambda d: (d.used[1] if d.used[0] == minute else 0) / (d.tpm or 1))

    def end(self, dep: Deployment, latency: float | None, tokens: int | None) -> None:
        """An attempt (begun with ``dep.inflight += 1``) ended: ``latency`` to its first byte (None: it failed
        first), ``tokens`` it used."""
        dep.inflight -= 1
        if latency is not None:
            dep.latency = latency if dep.latency == 0.0 else 0.7 * dep.latency + 0.3 * latency
        if tokens:
            minute = int(time.time() // 60)
            was, count = dep.used
            dep.used = (minute, (count if was == minute else 0) + tokens)

    def check(self, model: str | None) -> None:
        """404 naming the configured models unless ``model`` is one of them."""
        if model is None or model not in self._groups:
            raise self.unknown(model)

    def pick(self, model: str | None) -> Deployment:
        """The deployment for a call to ``model`` (404 when unknown, 503 when its whole group cools down)."""
        if model is not None:
            found = self._single.get(model)
            if found is not None:
                return found
            if model in self._groups:
                chosen = self.choose(model, ())
                if chosen is None:
                    raise self.cooling(model)
                return chosen
        raise self.unknown(model)

    def cooling(self, model: str) -> GatewayError:
        """503 naming a group whose every deployment is cooling down."""
        wait = min(self.cooldowns.cooling(d.counter_id) for d in self._groups[model])
        return GatewayError(503, f"Every deployment of model {model!r} is cooling down after failures; try again "
                            f"in {wait:.0f} s.", code="model_group_cooling_down",
                            headers={"retry-after": str(max(1, round(wait)))})

    def unknown(self, model: str | None) -> GatewayError:
        shown = ", ".join(self.names[:50]) + (", ..." if len(self.names) > 50 else "")
        return GatewayError(404, f"Model {model!r} is not configured on this gateway. Configured models: {shown}.",
                            param="model", code="model_not_found")
