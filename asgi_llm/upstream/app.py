"""``UpstreamApp``: the terminal ASGI app that answers or forwards each request.

- POST to an LLM route: the body comes from the ``RequestContext`` (``Ingest`` made
  it; without ``Ingest`` it is read here the same way), ``model`` picks the
  deployment, and the deployment's provider answers (``upstream.providers``: the
  call is forwarded to an OpenAI-compatible server, or answered by the mock).
  Multipart uploads are streamed through, routed by their ``model`` field.
- GET ``/models``, ``/health/liveliness``, ``/health/readiness`` (with the deployments cooling
  down), ``/health`` (LiteLLM's: every deployment probed, healthy or not).
- A model with several deployments, fallbacks or a chain deadline goes through the
  ``Dispatcher`` (retries elsewhere, fallbacks, cooldowns); any other straight to its
  deployment.
- The shared aiohttp session lives in the lifespan (or is made on first use when
  mounted where no lifespan arrives) and is closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import msgspec

from asgi_llm.config.load import UpstreamSettings
from asgi_llm.hooks.llm_client import use_upstream
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.context import RequestContext, get_context, set_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import send_whole
from asgi_llm.request.ingest import DEFAULT_MAX_BODY, ClientDisconnected, Limits, ingest
from asgi_llm.request.multipart import rest_of_body, sniff_model
from asgi_llm.request.routes import HEALTH_PATHS, local_path, match_route
from asgi_llm.types import Message, Receive, Scope, Send
from asgi_llm.upstream.dispatch import Dispatcher
from asgi_llm.upstream.forward import Forwarder
from asgi_llm.upstream.health import Health
from asgi_llm.upstream.providers import providers
from asgi_llm.upstream.router import Router

log = logging.getLogger("asgi_llm")
_encode = msgspec.json.Encoder().encode
_HEALTHY = _encode({"status": "healthy"})


class UpstreamApp:
    """The forwarding app; ``session`` may be injected (it is then not closed here)."""

    def __init__(self, router: Router, *, settings: UpstreamSettings | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY, session: aiohttp.ClientSession | None = None,
                 limits: Limits | None = None, metrics: GatewayMetrics | None = None) -> None:
        self.router = router
        self.limits = limits if limits is not None else Limits(max_body_bytes=max_body_bytes)
        self.forwarder = Forwarder(settings or UpstreamSettings(), session, metrics)
        self.providers = providers(self.forwarder)
        self.dispatcher = Dispatcher(router, self.providers, router.config, self.forwarder.pause)
        general = router.config.general_settings
        self.health = Health(router, self.forwarder, background=general.background_health_checks,
                             interval=general.health_check_interval)
        use_upstream(self)  # hooks' acompletion() goes through the latest terminal app built
        models = [{"id": n, "object": "model", "created": 0, "owned_by": "asgi-llm"} for n in router.names]
        self._models = _encode({"object": "list", "data": models})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.forwarder.session  # noqa: B018 - create the pool inside the server's loop
                self.health.start()
                self.router.cooldowns.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Stop the background checks and close the upstream pool (for embedders without lifespan)."""
        self.health.stop()
        self.router.cooldowns.stop()
        await self.forwarder.aclose()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        route = ctx.route if ctx is not None else match_route(scope)  # Ingest matched it already
        if route is None:
            await self.serve_local(scope, send)
            return
        try:
            if ctx is None:
                ctx = await ingest(scope, receive, route, self.limits)
                set_context(scope, ctx)
            if ctx.body is None:
                await self.forward_upload(ctx, scope, receive, send)
            else:
                await self.forward_json(ctx, scope, receive, send)
        except ClientDisconnected:
            return

    async def forward_json(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the call, build the body the upstream gets, and let the deployment's provider answer."""
        assert ctx.body is not None
        if self.dispatcher.wanted(ctx):
            await self.dispatcher.run(ctx, scope, receive, send)
            return
        dep = ctx.deployment or self.router.pick(ctx.model)  # a layer may have chosen (deployment limits)
        provider = self.providers[dep.provider]
        await provider.answer(provider.prepare(dep, ctx, scope, receive), send)

    async def forward_upload(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        model, first, more = await sniff_model(scope, receive)
        if model is None:
            raise GatewayError(400, "Multipart body has no `model` field before the file.", param="model",
                               code="missing_model")
        dep = self.router.pick(model)
        provider = self.providers[dep.provider]
        if not provider.uploads:
            raise GatewayError(400, f"The {dep.provider} provider does not serve {ctx.route.path}.",
                               code="unsupported_route")
        uploaded = asyncio.Event()
        failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        body = rest_of_body(first, more, receive, self.limits.max_body_bytes, uploaded, failed)

        async def after_upload() -> Message:  # `receive` carries the upload until it is all sent
            await uploaded.wait()
            return await receive()

        async def unless_failed(message: Message) -> None:
            if failed.done():  # the upstream may answer a body cut short by the client's fault: not relayed
                raise failed.result()
            await send(message)

        upload = asyncio.ensure_future(provider.upload(dep, provider.url(dep, ctx.route.path), body, scope,
                                                       after_upload, unless_failed))
        try:
            await asyncio.wait((upload, failed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not upload.done():  # the client's body failed (or we were cancelled): stop the upstream call
                upload.cancel()
            with contextlib.suppress(BaseException):  # waited for; its own outcome is raised below
                await upload
        if failed.done():
            raise failed.result()  # the client's fault, answered as such (408, 413), not as the upstream's
        failed.cancel()
        await upload

    async def serve_local(self, scope: Scope, send: Send) -> None:
        path = local_path(scope)
        if path == "/models" or path in HEALTH_PATHS or path == "/health":
            if scope["method"] not in ("GET", "HEAD"):
                raise GatewayError(405, f"{path} takes GET.", code="method_not_allowed")
            if path == "/health":
                await send_whole(send, 200, _encode(await self.health.report()))
            elif path == "/health/readiness":
                await send_whole(send, 200, _encode({"status": "healthy", "cooling_down": self.health.cooling()}))
            else:
                await send_whole(send, 200, self._models if path == "/models" else _HEALTHY)
            return
        raise GatewayError(404, f"No route {scope['method']} {scope['path']} on this gateway.", code="not_found")
