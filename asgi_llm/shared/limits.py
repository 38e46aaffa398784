"""Rate limits: which counters a request touches (a ``Plan``) and what checking them found (``Verdict``).

Every limit is a counter: requests (``r``) and tokens (``t``) per 60-second window,
parallel requests (``p``) as leases. A request's plan holds the checks every call
must pass (the key's, the team's, their per-model limits, the gateway's) and, when
deployments of the model have their own ``rpm``/``tpm``, one list of checks per
candidate deployment: the first candidate that fits is chosen. A backend
(``LocalState``, ``RedisState``) checks a whole plan in one step and writes nothing
unless every check fits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asgi_llm.config.schema import Config, Limits, LiteLLMParams

WINDOW = 60.0  # seconds of a request or token window
REQUESTS, TOKENS, PARALLEL = "r", "t", "p"


@dataclass(slots=True)
class Check:
    """One counter a request must fit under. ``scope``/``name`` say which limit it is, never whose key."""

    key: str
    kind: str
    limit: int
    scope: str  # key, team, key model, team model, deployment, gateway
    name: str  # the config key: rpm_limit, model_tpm_limit[gpt-4o], rpm, max_parallel_requests...
    amount: int = 1
    used: int = 0  # after admission: the counter's value, this request included

    def describe(self) -> str:
        unit = {REQUESTS: "requests per minute", TOKENS: "tokens per minute", PARALLEL: "parallel requests"}
        return f"{self.scope} limit `{self.name}` ({self.limit} {unit[self.kind]})"


@dataclass(slots=True)
class Plan:
    """The checks of one request; ``candidates[i]`` belongs to ``deployments[i]``."""

    mandatory: list[Check] = field(default_factory=list)
    candidates: list[list[Check]] = field(default_factory=list)
    deployments: list[Any] = field(default_factory=list)
    tokens: int = 0  # the reserved estimate

    def __bool__(self) -> bool:
        return bool(self.mandatory or self.candidates)

    def checks(self) -> list[Check]:
        return [*self.mandatory, *(c for cand in self.candidates for c in cand)]


@dataclass(slots=True)
class Verdict:
    """What one atomic check found. ``taken``: the checks written (mandatory, then the chosen deployment's);
    on a refusal, the ones looked at before ``failed`` (nothing was written)."""

    ok: bool
    reset: float  # seconds to the window's end (server clock)
    window: int = 0
    chosen: Any = None  # the deployment picked, when deployments had limits
    cached: bytes | None = None  # the cache entry read in the same step
    taken: list[Check] = field(default_factory=list)
    failed: Check | None = None

    @property
    def takes_tokens(self) -> bool:
        """Whether a token limit was taken: its reservation is corrected to the real usage at the end."""
        return any(c.kind == TOKENS for c in self.taken)

    def retry_after(self) -> int:
        """Whole seconds until the failing limit can admit: a window's end, or 1 for a parallel limit."""
        if self.failed is not None and self.failed.kind == PARALLEL:
            return 1
        return max(1, math.ceil(self.reset))

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers from the tightest request and token limits."""
        out: list[tuple[bytes, bytes]] = []
        reset = b"%.3fs" % self.reset
        checks = self.taken if self.failed is None else [*self.taken, self.failed]  # a refusal shows its limit
        for kind, word in ((REQUESTS, b"requests"), (TOKENS, b"tokens")):
            tightest: Check | None = None
            for check in checks:
                if check.kind == kind and (tightest is None or
                                           check.limit - check.used < tightest.limit - tightest.used):
                    tightest = check
            if tightest is not None:
                out += ((b"x-ratelimit-limit-" + word, b"%d" % tightest.limit),
                        (b"x-ratelimit-remaining-" + word, b"%d" % max(0, tightest.limit - tightest.used)),
                        (b"x-ratelimit-reset-" + word, reset))
        return out


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def deployment_id(model_name: str, params: LiteLLMParams) -> str:
    """A deployment's counter id, the same in every instance with the same config."""
    return _digest(model_name, params.model, params.api_base or "")


class LimitTable:
    """Every configured limit, by key hash, team id and deployment; ``plan`` picks a request's."""

    def __init__(self, config: Config, prefix: str = "asgi-llm:rl") -> None:
        self.prefix = prefix
        self.keys: dict[str, Limits] = {k.key_hash: k for k in config.keys if _limited(k)}
        self.teams: dict[str, Limits] = {t.team_id: t for t in config.teams if _limited(t)}
        general = config.general_settings
        caps = [c for c in (general.max_parallel_requests, general.global_max_parallel_requests) if c]
        self.gateway = min(caps) if caps else None
        self.deployment_limits: dict[str, tuple[int | None, int | None]] = {}
        for entry in config.model_list:
            params = entry.litellm_params
            if params.rpm or params.tpm:
                self.deployment_limits[deployment_id(entry.model_name, params)] = (params.rpm, params.tpm)

    def __bool__(self) -> bool:
        return bool(self.keys or self.teams or self.gateway or self.deployment_limits)

    def plan(self, key_hash: str | None, team_id: str | None, model: str | None, deployments: Sequence[Any],
             tokens: int) -> Plan:
        """The checks for one request. ``deployments``: the model's candidates in routing order (each
        with a ``counter_id``); ``tokens``: the estimate to reserve under token limits."""
        plan = Plan(tokens=tokens)
        mandatory = plan.mandatory
        if key_hash is not None:
            found = self.keys.get(key_hash)
            if found is not None:
                self._add(mandatory, found, f"key:{key_hash}", "key", model, tokens)
        if team_id is not None:
            team = self.teams.get(team_id)
            if team is not None:
                self._add(mandatory, team, f"team:{_digest(team_id)}", "team", model, tokens)
        if self.gateway is not None:
            mandatory.append(Check(f"{self.prefix}:gateway:p", PARALLEL, self.gateway, "gateway",
                                   "max_parallel_requests"))
        if self.deployment_limits and deployments:
            candidates = []
            for dep in deployments:
                rpm, tpm = self.deployment_limits.get(dep.counter_id, (None, None))
                checks = []
                base = f"{self.prefix}:dep:{dep.counter_id}"
                if rpm:
                    checks.append(Check(base + ":r", REQUESTS, rpm, "deployment", "rpm"))
                if tpm:
                    checks.append(Check(base + ":t", TOKENS, tpm, "deployment", "tpm", tokens))
                candidates.append(checks)
            if any(candidates):
                plan.candidates, plan.deployments = candidates, list(deployments)
        return plan

    def _add(self, out: list[Check], limits: Limits, who: str, scope: str, model: str | None, tokens: int) -> None:
        base = f"{self.prefix}:{who}"
        if limits.rpm_limit:
            out.append(Check(base + ":r", REQUESTS, limits.rpm_limit, scope, "rpm_limit"))
        if limits.tpm_limit:
            out.append(Check(base + ":t", TOKENS, limits.tpm_limit, scope, "tpm_limit", tokens))
        if limits.max_parallel_requests:
            out.append(Check(base + ":p", PARALLEL, limits.max_parallel_requests, scope, "max_parallel_requests"))
        if model is not None:
            rpm = limits.model_rpm_limit.get(model)
            if rpm:
                out.append(Check(f"{base}:m:{_digest(model)}:r", REQUESTS, rpm, f"{scope} model",
                                 f"model_rpm_limit[{model}]"))
            tpm = limits.model_tpm_limit.get(model)
            if tpm:
                out.append(Check(f"{base}:m:{_digest(model)}:t", TOKENS, tpm, f"{scope} model",
                                 f"model_tpm_limit[{model}]", tokens))


def _limited(limits: Limits) -> bool:
    return bool(limits.rpm_limit or limits.tpm_limit or limits.max_parallel_requests or limits.model_rpm_limit
                or limits.model_tpm_limit)
