"""``Dispatcher``: one call's attempts across deployments and fallback groups (LiteLLM's router).

Used for a model whose group has several deployments, or fallbacks, or a chain
deadline (``router_settings.timeout``), or when the body names ``fallbacks``; any other
call goes straight to its one deployment (``UpstreamApp``), as cheap as before.

1. **Retries go elsewhere first.** A retryable failure (connection error, timeout, 429,
   5xx) counts against the deployment's cooldown and the call is tried again on
   another usable deployment of the group, at once; when there is none, on the same
   one after the backoff (doubling, or the upstream's ``Retry-After``). The group gets
   ``1 + retries`` attempts (the deployment's ``max_retries``, else ``num_retries``).
   401/403/404 from a deployment cool it down at once and move on to another one.
2. **Fallbacks.** When a group is exhausted, or all its deployments are cooling down,
   the next group of its fallbacks is tried (``fallbacks`` for the group, else
   ``default_fallbacks``; ``context_window_fallbacks`` after a context-length error,
   ``content_policy_fallbacks`` after a content-policy refusal), with its own
   deployments and retries. A body's ``fallbacks`` replaces the config's for that call;
   only configured groups count, and a key limited to some ``models`` tries only those.
3. **Only before the first byte.** Once any of the answer went to the client, a failure
   is the started stream's error (``Errors``): nothing is tried again.
4. **The answer** carries ``x-asgi-llm-model-group`` when a fallback group gave it; the
   trace lists the failed attempts (logging's ``attempted``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from asgi_llm.config.schema import Config
from asgi_llm.request.context import RequestContext
from asgi_llm.request.errors import GatewayError
from asgi_llm.types import Message, Receive, Scope, Send
from asgi_llm.upstream.forward import RETRY_STATUSES, retry_after
from asgi_llm.upstream.providers import Provider
from asgi_llm.upstream.router import Deployment, Router

_CONTEXT = ("context_length_exceeded", "context window", "maximum context length", "too many tokens")
_POLICY = ("content_policy_violation", "content_filter", "content management policy", "content policy")


def _kind(err: GatewayError) -> str:
    """What a failed attempt means: ``retry`` (elsewhere, then again), ``broken`` (this deployment is
    misconfigured: cool it down, go elsewhere), ``context``/``policy`` (those fallbacks), ``final``."""
    if err.code == "upstream_auth_failed" or err.status in (401, 403, 404):
        return "broken"
    if err.status in RETRY_STATUSES:
        return "retry"
    text = f"{err.code} {err.message}".lower()
    if any(word in text for word in _CONTEXT):
        return "context"
    if any(word in text for word in _POLICY):
        return "policy"
    return "final"


def _rules(rules: list[dict[str, list[str]]] | None) -> dict[str, list[str]]:
    return {group: list(targets) for rule in rules or () for group, targets in rule.items()}


class _Sent:
    """``send`` that notes when the answer started (a failure after it cannot be retried)."""

    __slots__ = ("at", "deadline", "send", "timed")

    def __init__(self, send: Send, timed: bool) -> None:
        self.send = send
        self.timed = timed
        self.at = 0.0  # when the first message went out (perf_counter when timed, else 1.0); 0: nothing yet
        self.deadline: asyncio.Timeout | None = None

    def __call__(self, message: Message) -> Awaitable[None]:
        if not self.at:
            self.at = time.perf_counter() if self.timed else 1.0
            if self.deadline is not None:
                self.deadline.reschedule(None)  # the chain's deadline ends where the answer starts
        return self.send(message)


class Dispatcher:
    """See the module docstring."""

    def __init__(self, router: Router, providers: dict[str, Provider], config: Config,
                 backoff: Callable[[int, float | None], Awaitable[None]]) -> None:
        self.router = router
        self.providers = providers
        self.backoff = backoff
        router_settings, litellm_settings = config.router_settings, config.litellm_settings

        def pick(key: str) -> dict[str, list[str]]:
            return _rules(getattr(router_settings, key) or getattr(litellm_settings, key))

        self.fallbacks = pick("fallbacks")
        self.context_fallbacks = pick("context_window_fallbacks")
        self.policy_fallbacks = pick("content_policy_fallbacks")
        self.default_fallbacks = list(router_settings.default_fallbacks or litellm_settings.default_fallbacks or ())
        self.timeout = router_settings.timeout
        self.timed = router.strategy == "latency-based-routing"  # only it needs each attempt's latency
        self.counted = router.strategy == "usage-based-routing"  # only it needs each call's tokens
        self.several = router.several
        self.groups = self.several | set(self.fallbacks) | set(self.context_fallbacks) | set(self.policy_fallbacks)
        self._polling = False
        self.everything = bool(self.default_fallbacks or self.timeout or "*" in self.fallbacks)

    def wanted(self, ctx: RequestContext) -> bool:
        """Whether this call goes through the dispatcher (else straight to its one deployment)."""
        body = ctx.body
        return self.everything or ctx.model in self.groups or (body is not None and "fallbacks" in body)

    def run(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The call's attempts, as one awaitable (a plain function: no coroutine of its own per call)."""
        if not self._polling:  # the shared cooldowns are read from the first call on (or the lifespan's start)
            self._polling = True
            self.router.cooldowns.start()
        sent = _Sent(send, self.timed)
        if self.timeout is None:
            return self._chain(ctx, scope, receive, sent)
        return self._within_deadline(ctx, scope, receive, sent, self.timeout)

    async def _within_deadline(self, ctx: RequestContext, scope: Scope, receive: Receive, sent: _Sent,
                               seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds) as deadline:
                sent.deadline = deadline
                await self._chain(ctx, scope, receive, sent)
        except TimeoutError:
            if sent.at:
                raise
            raise GatewayError(504, f"No deployment of model {ctx.model!r} or its fallbacks answered within "
                               f"router_settings.timeout ({seconds:g} s).", code="router_timeout") from None

    async def _chain(self, ctx: RequestContext, scope: Scope, receive: Receive, sent: _Sent) -> None:
        group = ctx.model
        if group is None:
            raise self.router.unknown(None)
        kind, error = await self._group(group, ctx, scope, receive, sent, ctx.deployment)
        if error is not None:
            await self._fallen(ctx, scope, receive, sent, group, kind, error)

    async def _fallen(self, ctx: RequestContext, scope: Scope, receive: Receive, sent: _Sent, group: str,
                      kind: str, error: GatewayError) -> None:
        """``group`` failed (``kind``, ``error``): its fallbacks, in order; else the last real failure."""
        for fallback in self._fallbacks(ctx, group, kind):
            kind, next_error = await self._group(fallback, ctx, scope, receive, sent, None)
            if next_error is None:
                return
            if kind != "cooling":
                error = next_error  # the last real failure is what the client hears
            if kind == "final":
                break
        raise error

    def _fallbacks(self, ctx: RequestContext, group: str, kind: str) -> list[str]:
        """The groups to try after ``group`` failed this way, that the caller may use."""
        if kind == "final" or kind == "started":
            return []
        body = ctx.body or {}
        asked = body.get("fallbacks")
        if kind == "context":
            found = self.context_fallbacks.get(group, [])
        elif kind == "policy":
            found = self.policy_fallbacks.get(group, [])
        elif isinstance(asked, list):  # the caller's own list, only of configured groups
            found = [name for name in asked if isinstance(name, str)]
        else:
            found = self.fallbacks.get(group) or self.fallbacks.get("*") or self.default_fallbacks
        allowed = ctx.auth.models if ctx.auth is not None and ctx.auth.models else None
        names = self.router.names
        return [name for name in dict.fromkeys(found)
                if name != group and name in names and (allowed is None or name in allowed)]

    async def _group(self, group: str, ctx: RequestContext, scope: Scope, receive: Receive, sent: _Sent,
                     first: Deployment | None) -> tuple[str, GatewayError | None]:
        """Attempts at one group: ``("ok", None)``, or how it failed and the error to report."""
        router = self.router
        several = group in self.several
        failed: list[Deployment] = []
        attempt, budget = 0, None
        error: GatewayError | None = None
        kind = "retry"
        while True:
            dep = first if first is not None and attempt == 0 else router.choose(group, failed)
            if dep is None:
                return "cooling", error or router.cooling(group)
            if budget is None:
                budget = dep.retries  # the first deployment's: max_retries, else num_retries
            if attempt and failed and dep is failed[-1]:  # nowhere else to go: wait before the same one again
                await self.backoff(attempt - 1, retry_after(error.headers.get("retry-after") if error else None))
            dep.inflight += 1  # the router's load figure (least-busy)
            started = time.perf_counter() if self.timed else 0.0
            provider = self.providers[dep.provider]
            call = provider.prepare(dep, ctx, scope, receive)
            call.retries = 0  # retries are this loop's, elsewhere first
            trace = call.trace
            try:  # one attempt, inline: this is every call's path through a group of several
                await provider.answer(call, sent if dep.model_name == ctx.model else _with_group(sent, dep.model_name))
            except GatewayError as exc:
                router.end(dep, None, None)
                if sent.at:
                    raise  # the answer started: a started stream's error, nothing is tried again
                error, kind = exc, _kind(exc)
                if trace is not None:
                    trace.failed.append({"model_group": dep.model_name, "deployment": dep.label,
                                         "status": exc.status, "code": exc.code})
                if kind not in ("retry", "broken"):
                    return kind, error
                if several:
                    await router.cooldowns.failed(dep.counter_id, at_once=kind == "broken")
                failed.append(dep)
                attempt += 1
                if attempt > budget or (kind == "broken" and not several):
                    return kind, error
                continue
            except BaseException:
                router.end(dep, None, None)
                raise
            tokens = None
            if self.counted and trace is not None and isinstance(trace.usage, dict):
                found = trace.usage.get("total_tokens")
                tokens = found if isinstance(found, int) else None
            router.end(dep, sent.at - started if started and sent.at else None, tokens)
            return "ok", None


def _with_group(send: Send, group: str) -> Send:
    header = (b"x-asgi-llm-model-group", group.encode())

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return tagged

