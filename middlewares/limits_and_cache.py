"""``LimitsAndCache``: rate limits and the response cache, checked in one step before the call.

It sits right above the terminal app, so everything outside it (auth, pre-call
hooks, prompts, moderation, post-call and stream hooks) runs on a cached answer as
on a fresh one: a guardrail cannot be bypassed through the cache.

Per LLM request:

1. The plan: every limit that applies (the key's, its team's, their per-model
   limits, the gateway's ``max_parallel_requests``, the model's deployments'
   ``rpm``/``tpm``) and, when the response cache is on for this call, its key.
2. One step (``SharedState.admit``; one Redis round trip): all limits checked and
   taken together, the cache entry read, a deployment under its limits chosen.
   A limit that does not fit: 429 ``rate_limit_error`` naming the limit (never the
   key), with ``retry-after`` and OpenAI's ``x-ratelimit-*`` headers.
3. A hit is served from the entry (``x-asgi-llm-cache: hit``, ``x-litellm-cache-key``);
   it counts against request limits, not token limits. A miss goes to the upstream
   (``x-asgi-llm-cache: miss``, or ``bypass`` when the cache was not read).
4. Before the answer's last byte goes out: leases freed, the token reservation
   corrected to the upstream's usage (refunded when the call failed or the client
   left), and a complete 200 answer stored, in one more step, so a client that has
   its answer can use its freed slot at once.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec

from asgi_llm.config.schema import CacheParams
from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.observe.cost import reply_usage, usage_tokens
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.shared.cache_entry import Entry, pack, serve, stream_entry, unpack
from asgi_llm.shared.cache_key import CacheControl, cache_control, cache_key, tenant_of
from asgi_llm.shared.limits import PARALLEL, TOKENS, Check, Plan, Verdict
from asgi_llm.shared.state import SharedState
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send
from asgi_llm.upstream.router import Router
from asgi_llm.upstream.trace import UpstreamTrace, get_trace, set_trace

# LiteLLM's call type names (either form) to our routes' call types
CALL_TYPES = {"completion": "completion", "acompletion": "completion", "text_completion": "text_completion",
              "atext_completion": "text_completion", "embedding": "embeddings", "aembedding": "embeddings"}
CACHEABLE = frozenset(CALL_TYPES.values())


def estimate_tokens(ctx: RequestContext) -> int:
    """Tokens to reserve before the call: the body's size / 4 (an over-estimate of the prompt) plus the
    most it may generate (``max_tokens`` / ``max_completion_tokens``) when given."""
    body = ctx.body
    if body is None:
        return 0
    size = len(ctx.raw) if ctx.raw is not None else len(ctx.body_bytes())
    most = body.get("max_completion_tokens", body.get("max_tokens"))
    return max(1, size // 4) + (most if type(most) is int and most > 0 else 0)


class _Call:
    """One admitted call on its way through: the send wrapper and what is settled at the end."""

    __slots__ = ("body", "capture", "headers", "key", "layer", "lease", "settled", "size", "status", "store",
                 "stream", "tokens", "trace", "ttl", "verdict")

    def __init__(self, layer: LimitsAndCache, verdict: Verdict | None, lease: str, key: str | None,
                 store: bool, headers: list[tuple[bytes, bytes]], trace: UpstreamTrace | None,
                 ttl: float | None) -> None:
        self.layer = layer
        self.ttl = ttl
        self.verdict = verdict
        self.lease = lease
        self.key = key
        self.store = store
        self.headers = headers
        self.trace = trace
        self.tokens = verdict is not None and verdict.takes_tokens
        self.capture = False  # keep the answer's bytes: to store it, or to read a JSON answer's usage
        self.size = 0
        self.body: list[bytes] = []
        self.status = 0
        self.stream = False
        self.settled = False

    async def send(self, message: Message, send: Send) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = message["headers"] = list(message.get("headers", ()))
            self.stream = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)
            self.capture = self.store or (self.tokens and not self.stream)  # a stream's usage comes in the trace
            headers += self.headers
            await send(message)
            return
        if self.capture:
            body: bytes = message.get("body", b"")
            self.body.append(body)
            self.size += len(body)
            if self.store and self.size > self.layer.max_entry_bytes:  # too large to keep: stop holding it
                self.store = False
                self.capture = self.tokens and not self.stream
                if not self.capture:
                    self.body = []
        if not message.get("more_body", False):
            await self.finish(ok=True)
        await send(message)

    async def finish(self, ok: bool) -> None:
        """The one settle step; ``ok``: the answer is complete (its last byte is about to go out)."""
        if self.settled:
            return
        self.settled = True
        good = ok and self.status == 200 and (self.trace is None or not self.trace.client_gone)
        raw = b"".join(self.body) if self.capture else b""
        changes: list[tuple[Check, int]] = []
        if self.verdict is not None:
            for check in self.verdict.taken:
                if check.kind == PARALLEL:
                    changes.append((check, 0))
                elif check.kind == TOKENS:
                    used = self.used_tokens(raw) if good else 0
                    changes.append((check, (used - check.amount) if used is not None else 0))
        entry = None
        if self.store and good and self.key is not None:
            found = stream_entry(raw) if self.stream else Entry(False, body=raw)
            if found is not None:
                entry = (self.key, pack(found), self.ttl)
        await self.layer.state.settle(self.lease, self.verdict, changes, entry)

    def used_tokens(self, raw: bytes) -> int | None:
        usage: Any = self.trace.usage if self.trace is not None else None
        if usage is None and not self.stream and raw:
            try:
                usage = reply_usage(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON: no usage to correct with
                usage = None
        found = usage_tokens(usage)
        return sum(found) if found is not None else None


class LimitsAndCache:
    """See the module docstring. ``cache``: the cache settings, None when the response cache is off."""

    def __init__(self, app: ASGIApp, *, state: SharedState, router: Router, cache: CacheParams | None = None,
                 namespace: str = "asgi-llm:cache") -> None:
        self.app = app
        self.state = state
        self.router = router
        self.cache = cache
        self.namespace = cache.namespace if cache is not None and cache.namespace else namespace
        self.ttl = cache.ttl if cache is not None else None
        self.max_entry_bytes = cache.max_entry_bytes if cache is not None else 0
        types = cache.supported_call_types if cache is not None else None
        self.call_types = CACHEABLE if types is None else frozenset(CALL_TYPES[t] for t in types if t in CALL_TYPES)
        self.metrics = state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        if ctx is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth: UserAPIKeyAuth | None = ctx.auth
        key_hash = auth.api_key if auth is not None else None
        team_id = auth.team_id if auth is not None else None
        model = ctx.model
        control, key, result = self._cache_plan(scope, ctx, key_hash, team_id, model)
        table = self.state.table
        plan = Plan()
        if table:
            deployments = self.router.ordered(model) if table.deployment_limits and model is not None else ()
            plan = table.plan(key_hash, team_id, model, deployments, estimate_tokens(ctx))
        lease = os.urandom(8).hex() if plan else ""
        stored_at = self._redis_key(key, control)
        found = await self.state.admit(plan, lease, stored_at if control is not None and control.read else None,
                                       control.max_age if control is not None else None)
        verdict = found.verdict
        if verdict is not None and not verdict.ok:
            self._reject(verdict)
        if key is not None and not found.cache_up:
            result = "bypass"
        headers = verdict.headers() if verdict is not None else []
        hit = unpack(found.stored) if found.stored is not None else None
        if result is not None:
            result = "hit" if hit is not None else result
            headers.append((b"x-asgi-llm-cache", result.encode()))
            if self.metrics is not None:
                self.metrics.bump(self.metrics.cache_requests, result)
        if verdict is not None and verdict.chosen is not None:
            ctx.deployment = verdict.chosen
        trace = get_trace(scope)
        if hit is not None:
            headers.append((b"x-litellm-cache-key", key.encode() if key else b""))
            await self._serve_hit(ctx, hit[1], headers, trace, send, verdict, lease)
            return
        if verdict is not None and verdict.takes_tokens:
            if trace is None:  # the usage to correct the reservation with comes through a trace
                trace = UpstreamTrace()
                set_trace(scope, trace)
            trace.want_usage = True
        store = key is not None and control is not None and control.store and found.cache_up
        if verdict is None and not store and not headers:
            await self.app(scope, receive, send)
            return
        ttl = control.ttl if control is not None and control.ttl is not None else self.ttl
        call = _Call(self, verdict, lease, stored_at if store else None, store, headers, trace, ttl)
        try:
            await self.app(scope, receive, lambda m: call.send(m, send))
        finally:
            if not call.settled:  # failed, or the client left: release what was reserved
                await asyncio.shield(asyncio.ensure_future(call.finish(ok=False)))

    def _cache_plan(self, scope: Scope, ctx: RequestContext, key_hash: str | None, team_id: str | None,
                    model: str | None) -> tuple[CacheControl | None, str | None, str | None]:
        """(controls, the entry's key, the cache result so far) for a cacheable call, else Nones (no cache)."""
        if self.cache is None or ctx.body is None:
            return None, None, None
        control = cache_control(scope, ctx.body)
        wanted = self.cache.mode == "default_on" or control.opted_in
        if ctx.call_type not in self.call_types or not wanted or model is None:
            return None, None, "bypass"
        digest = cache_key(ctx.call_type, tenant_of(self.cache.scope, key_hash, team_id), model, ctx.body)
        return control, digest, "miss" if control.read else "bypass"

    def _redis_key(self, digest: str | None, control: CacheControl | None) -> str | None:
        if digest is None:
            return None
        namespace = control.namespace if control is not None and control.namespace else self.namespace
        return f"{namespace}:{digest}"

    def _reject(self, verdict: Verdict) -> None:
        failed = verdict.failed
        assert failed is not None
        if self.metrics is not None:
            self.metrics.bump(self.metrics.rate_limit_rejections, failed.scope)
        wait = verdict.retry_after()
        headers = {k.decode(): v.decode() for k, v in verdict.headers()}
        headers["retry-after"] = str(wait)
        raise GatewayError(429, f"Rate limit reached: {failed.describe()}, {failed.used} used. "
                           f"Retry after {wait} s.", code="rate_limit_exceeded", headers=headers)

    async def _serve_hit(self, ctx: RequestContext, entry: Entry, headers: list[tuple[bytes, bytes]],
                         trace: UpstreamTrace | None, send: Send, verdict: Verdict | None, lease: str) -> None:
        if trace is not None:
            trace.cache_hit = True
        body = ctx.body or {}
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        changes = [(c, 0) for c in verdict.taken if c.kind == PARALLEL] if verdict is not None else []
        settled = False

        async def settle_first(message: Message) -> None:  # the lease is free before the last byte
            nonlocal settled
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not settled:
                settled = True
                await self.state.settle(lease, verdict, changes, None)
            await send(message)

        try:
            await serve(entry, ctx.stream, include_usage, headers, settle_first if changes else send)
        finally:
            if changes and not settled:
                await asyncio.shield(asyncio.ensure_future(self.state.settle(lease, verdict, changes, None)))
