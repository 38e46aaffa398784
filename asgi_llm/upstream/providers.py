"""Providers: how one deployment's calls are answered, behind one interface.

``UpstreamApp`` routes a call to a deployment, builds the body the upstream gets,
and hands an ``UpstreamCall`` to the provider the deployment names (``openai/...``,
``mock/...``), once. A provider answers it through ``send`` in OpenAI's shapes:

- ``OpenAIProvider`` forwards it to an OpenAI-compatible server over the shared
  pool (``Forwarder``), inside a ``DisconnectWatch``; it also streams uploads;
- ``MockProvider`` answers in-process (``upstream.mock``), logged like an upstream;
- ``PromptSourceProvider`` (``langfuse/...``) serves prompts, not calls: a call that
  reaches it was sent to the wrong route, and gets a 400 saying so.

A new provider is one class here (or a module of its own) and one entry in
``providers``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from asgi_llm.config.providers import CATALOGUE
from asgi_llm.request.context import RequestContext
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import header
from asgi_llm.types import Receive, Scope, Send
from asgi_llm.upstream import mock
from asgi_llm.upstream.forward import Forwarder, Translation, request_headers, upstream_body
from asgi_llm.upstream.router import Deployment
from asgi_llm.upstream.trace import UpstreamTrace, get_trace
from asgi_llm.upstream.usage_tap import traced_send
from asgi_llm.upstream.watch import DisconnectWatch

log = logging.getLogger("asgi_llm")
_encode = msgspec.json.Encoder().encode


class UpstreamCall:
    """One JSON call on its way to a deployment: what a provider needs to answer it."""

    __slots__ = ("body", "ctx", "dep", "receive", "retries", "scope", "trace", "url")

    def __init__(self, dep: Deployment, ctx: RequestContext, body: dict[str, Any], url: str, scope: Scope,
                 receive: Receive, trace: UpstreamTrace | None) -> None:
        self.dep = dep
        self.ctx = ctx
        self.body = body  # as the upstream gets it: gateway-only fields gone, `model` the deployment's
        self.url = url  # in the provider's own form (``Provider.url``)
        self.scope = scope
        self.receive = receive  # only reports disconnects: the body came from the context
        self.trace = trace  # an observer's record of the upstream call, or None
        self.retries: int | None = None  # retries on this deployment; None: its own (the router retries elsewhere)


class Provider:
    """Answers a deployment's calls; ``uploads``: it can also take streamed multipart uploads."""

    uploads = False

    def url(self, dep: Deployment, path: str) -> str:
        """Where a call to ``path`` (``/chat/completions``...) goes for ``dep``."""
        return dep.api_base + path

    def prepare(self, dep: Deployment, ctx: RequestContext, scope: Scope, receive: Receive) -> UpstreamCall:
        """The call ``dep`` gets for this request: the body as the upstream takes it, at this provider's
        URL. From here the body goes from the context (``receive`` only reports disconnects), and an
        observer's trace is told what goes upstream."""
        assert ctx.body is not None
        ctx.consumed = True
        call = UpstreamCall(dep, ctx, upstream_body(ctx.body, dep.model), self.url(dep, ctx.route.path), scope,
                            receive, get_trace(scope))
        if call.trace is not None:
            call.trace.describe(dep, call.url, call.body, ctx)
        return call

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        """Answer ``call`` through ``send`` (OpenAI's shapes), or raise a ``GatewayError``."""
        raise NotImplementedError

    async def upload(self, dep: Deployment, url: str, body: AsyncIterator[bytes], scope: Scope, receive: Receive,
                     send: Send) -> None:
        """Forward a multipart upload as it streams (only when ``uploads``)."""
        raise NotImplementedError


class ForwardingProvider(Provider):
    """A provider over HTTP: the shared pool, retries, and a client that leaves cancels the call."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def headers(self, dep: Deployment, scope: Scope, content_type: str | None) -> dict[str, str]:
        """The request headers the upstream gets (the deployment's key as a bearer token)."""
        return request_headers(dep, scope["headers"], content_type)

    async def upload(self, dep: Deployment, url: str, body: AsyncIterator[bytes], scope: Scope, receive: Receive,
                     send: Send) -> None:
        content_type = header(scope, b"content-type")
        headers = self.headers(dep, scope, content_type.decode("latin-1") if content_type else None)
        async with DisconnectWatch(receive):
            await self.forwarder.forward(dep, url, body, headers, False, send)

    async def forward(self, call: UpstreamCall, body: bytes, headers: dict[str, str], send: Send,
                      translate: Translation | None = None) -> None:
        r"""Send ``body`` to ``call.url`` and relay the answer (``translate``\ d into OpenAI's shape)."""
        dep, trace = call.dep, call.trace
        async with DisconnectWatch(call.receive) as watch:
            await self.forwarder.forward(dep, call.url, body, headers, call.ctx.stream, send, trace, call.retries,
                                         translate)
        if watch.gone:
            if trace is not None:
                trace.client_gone = True
            log.info("client left; upstream call to %r cancelled", dep.model_name)


class OpenAIProvider(ForwardingProvider):
    """An OpenAI-compatible server (``openai/`` and the compatible prefixes): the body is forwarded as
    it is, the answer relayed as it comes."""

    uploads = True

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        await self.forward(call, _encode(call.body), self.headers(call.dep, call.scope, None), send)


class MockProvider(Provider):
    """The in-process mock; with an observer it is logged like an upstream call."""

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        assert call.ctx.body is not None
        body = {**call.ctx.body, **call.body}  # what was sent, with `mock_response` (a gateway-only field) too
        trace = call.trace
        if trace is None:
            await mock.answer(call.dep, call.ctx, send, body)
            return
        trace.begin(time.perf_counter())
        await mock.answer(call.dep, call.ctx, traced_send(send, trace) if trace.tapping else send, body)
        trace.done(None, time.perf_counter())


class PromptSourceProvider(Provider):
    """A prompt source (``langfuse/<model>``): ``PromptTemplating`` resolves its chat calls first."""

    async def answer(self, call: UpstreamCall, send: Send) -> None:
        raise GatewayError(400, f"Model {call.dep.model_name!r} takes its prompt from Langfuse: send it as a chat "
                           "completion.", param="model", code="prompt_model_on_wrong_route")


def providers(forwarder: Forwarder) -> dict[str, Provider]:
    """Every provider, by the prefix a deployment's ``model`` names it with (``config.providers``)."""
    from asgi_llm.upstream.anthropic import AnthropicProvider
    from asgi_llm.upstream.azure import AzureProvider

    kinds: dict[str, Provider] = {"openai": OpenAIProvider(forwarder), "azure": AzureProvider(forwarder),
                                  "anthropic": AnthropicProvider(forwarder), "mock": MockProvider(),
                                  "langfuse": PromptSourceProvider()}
    return {prefix: kinds[spec.kind] for prefix, spec in CATALOGUE.items()}
