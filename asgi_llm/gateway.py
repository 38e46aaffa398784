"""Assembly: the default stack built from a ``Config``.

This is the one module of ``asgi_llm`` allowed to import ``middlewares``. The
order is a contract (request-side outer to inner, response-side inner to outer)::

    MetricsEndpoint -> CallLogging -> Errors -> Ingest -> Admission -> Auth -> EnforceUserParam -> CallHooks
           -> PromptTemplating -> Moderation -> StreamHooks -> LimitsAndCache -> UpstreamApp (or Replay(app))

``LimitsAndCache`` is the innermost layer: the body it keys the cache by is the one the
upstream gets, and every policy layer runs on a cached answer as on a fresh one.

Pre-call hooks run before prompt management, as in LiteLLM (whose proxy runs
``async_pre_call_hook`` before the completion call, where prompts are rendered): a
hook sees, and may change, ``prompt_id`` and ``prompt_variables``.

A layer whose setting is off (no keys, no callbacks, no metrics, prices or ``call_headers``...)
is left out, so it costs nothing.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import Any

import aiohttp

from asgi_llm.config.callbacks import load_callbacks, load_functions
from asgi_llm.config.load import Config, ConfigError, load_config, prompts_path
from asgi_llm.config.redis import cache_in_redis, redis_target
from asgi_llm.hooks.cache import DualCache
from asgi_llm.hooks.custom_logger import CustomLogger, overrides
from asgi_llm.hooks.prompt_manager import is_manager
from asgi_llm.observe.cost import prices_of, register_prices
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.observe.queue import LogQueue
from asgi_llm.observe.sinks import LogSinks
from asgi_llm.prompts.langfuse import LangfusePrompts
from asgi_llm.prompts.store import PromptStore
from asgi_llm.request.error_layer import Errors
from asgi_llm.request.ingest import Ingest, Limits
from asgi_llm.request.replay import Replay
from asgi_llm.shared.limits import LimitTable
from asgi_llm.shared.redis_link import RedisLink
from asgi_llm.shared.state import SharedState
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send
from asgi_llm.upstream.app import UpstreamApp
from asgi_llm.upstream.router import Router
from middlewares.admission import Admission
from middlewares.auth import Auth
from middlewares.call_hooks import CallHooks
from middlewares.call_logging import CallLogging
from middlewares.limits_and_cache import LimitsAndCache
from middlewares.metrics_endpoint import MetricsEndpoint
from middlewares.moderation import Moderation
from middlewares.prompt_templating import PromptTemplating
from middlewares.stream_hooks import StreamHooks
from middlewares.user_param import EnforceUserParam

log = logging.getLogger("asgi_llm")
CONFIG_ENV = "ASGI_LLM_CONFIG"


class Gateway:
    """The assembled stack; an ASGI app. ``layers`` names them outer to inner."""

    def __init__(self, config: Config, *, app: ASGIApp | None = None, session: aiohttp.ClientSession | None = None,
                 callbacks: list[CustomLogger] | None = None, success_callback: list[Callable[..., Any]] | None = None,
                 failure_callback: list[Callable[..., Any]] | None = None,
                 input_callback: list[Callable[..., Any]] | None = None) -> None:
        general = config.general_settings
        limits = Limits(max_body_bytes=int(general.max_request_size_mb * 1024 * 1024),
                        max_header_bytes=int(general.max_request_header_kb * 1024),
                        body_timeout=general.request_body_timeout, max_messages=general.max_messages)
        self.config = config
        self.callbacks = callbacks if callbacks is not None else load_callbacks(
            config.litellm_settings.callbacks, config.path)
        params = config.litellm_settings.cache_params
        self.metrics = GatewayMetrics(e.model_name for e in config.model_list) if general.metrics else None
        target = redis_target(config)
        self.redis = RedisLink(target, retry_interval=params.retry_interval, metrics=self.metrics) if target else None
        self.cache = DualCache(redis=self.redis, in_memory_ttl=params.default_in_memory_ttl)
        self.upstream: UpstreamApp | None = None
        self.router = router = Router(config, link=self.redis)  # cooldowns shared through Redis when there
        inner: ASGIApp
        if app is None:
            self.upstream = UpstreamApp(router, settings=general.upstream, limits=limits, session=session,
                                        metrics=self.metrics)
            inner, self.layers = self.upstream, ["UpstreamApp"]
        else:
            inner, self.layers = Replay(app, router=router), ["Replay"]
        self.shared: SharedState | None = None
        table = LimitTable(config)
        caching = config.litellm_settings.cache
        if table or caching:
            self.shared = SharedState(table, link=self.redis, params=params if caching else None,
                                      cache_in_redis=cache_in_redis(params, target), metrics=self.metrics,
                                      lease_ttl=general.rate_limit_lease_ttl,
                                      fail_closed=general.rate_limit_fail == "closed")
            inner = LimitsAndCache(inner, state=self.shared, router=router, cache=params if caching else None)
            self.layers.insert(0, "LimitsAndCache")
        if any(overrides(cb, h) for cb in self.callbacks
               for h in ("async_post_call_streaming_iterator_hook", "async_post_call_streaming_hook")):
            inner = StreamHooks(inner, callbacks=self.callbacks)
            self.layers.insert(0, "StreamHooks")
        if any(overrides(cb, "async_moderation_hook") for cb in self.callbacks):
            inner = Moderation(inner, callbacks=self.callbacks, timeout=general.moderation_timeout,
                               policy=general.moderation_timeout_policy)
            self.layers.insert(0, "Moderation")
        inner = self._prompts(config, inner)  # inside CallHooks: LiteLLM renders prompts in the completion call
        if any(overrides(cb, h) for cb in self.callbacks
               for h in ("async_pre_call_hook", "async_post_call_success_hook")):
            inner = CallHooks(inner, callbacks=self.callbacks, cache=self.cache)
            self.layers.insert(0, "CallHooks")
        if general.enforce_user_param:
            inner = EnforceUserParam(inner)
            self.layers.insert(0, "EnforceUserParam")
        if general.master_key or config.keys:
            inner = Auth(inner, master_key=general.master_key, keys=config.keys)
            self.layers.insert(0, "Auth")
        if general.max_open_streams is not None or general.max_event_loop_lag is not None:
            inner = Admission(inner, max_open_streams=general.max_open_streams, max_lag=general.max_event_loop_lag,
                              metrics=self.metrics)
            self.layers.insert(0, "Admission")
        inner = Ingest(inner, limits=limits)  # the terminal app's too: one body deadline sweeper per loop
        self.app: ASGIApp = Errors(inner, callbacks=self.callbacks)
        self.layers[:0] = ["Errors", "Ingest"]
        self._logging(config, success_callback, failure_callback, input_callback)

    def _logging(self, config: Config, success: list[Callable[..., Any]] | None,
                 failure: list[Callable[..., Any]] | None, inputs: list[Callable[..., Any]] | None) -> None:
        """CallLogging, when anything observes calls (callbacks, metrics, prices, `call_headers`), and /metrics."""
        settings, general = config.litellm_settings, config.general_settings

        def functions(given: list[Callable[..., Any]] | None, spec: str | list[str] | None, key: str) -> Any:
            return given if given is not None else load_functions(spec, config.path, f"litellm_settings.{key}")

        sinks = LogSinks(self.callbacks, success=functions(success, settings.success_callback, "success_callback"),
                         failure=functions(failure, settings.failure_callback, "failure_callback"),
                         inputs=functions(inputs, settings.input_callback, "input_callback"))
        priced = False
        for entry in config.model_list:
            prices = prices_of(entry.model_info)
            if prices is not None:
                priced = True
                names = (entry.model_name, entry.litellm_params.model, entry.litellm_params.model.partition("/")[2])
                register_prices(names, prices)
        self.log_queue = LogQueue(maxsize=general.log_queue_size, timeout=general.log_callback_timeout,
                                  on_drop=self.metrics.dropped.inc if self.metrics is not None else None)
        if not (sinks or self.metrics is not None or priced or general.call_headers):
            return  # nothing observes calls: the layer and its headers would cost ~15% of throughput
        self.app = CallLogging(self.app, sinks=sinks, metrics=self.metrics, queue=self.log_queue)
        self.layers.insert(0, "CallLogging")
        if self.metrics is not None:
            self.app = MetricsEndpoint(self.app, metrics=self.metrics, master_key=general.master_key)
            self.layers.insert(0, "MetricsEndpoint")

    def _prompts(self, config: Config, inner: ASGIApp) -> ASGIApp:
        """PromptTemplating, when anything can manage prompts: managers, a store, Langfuse."""
        settings = config.prompts
        managers: list[object] = [cb for cb in self.callbacks if is_manager(cb)]
        self.store: PromptStore | None = None
        if settings.path is not None:
            self.store = load_prompt_store(config)
            managers.insert(0, self.store)
        upstream = self.upstream
        session = (lambda: upstream.forwarder.session) if upstream is not None else None
        self.langfuse = LangfusePrompts(session, ttl=settings.langfuse_cache_ttl)
        wanted = any(e.litellm_params.model.startswith("langfuse/") for e in config.model_list) or \
            "LANGFUSE_PUBLIC_KEY" in os.environ
        if not managers and not wanted:
            return inner
        self.layers.insert(0, "PromptTemplating")
        router = self.router  # one routing table
        return PromptTemplating(inner, managers=managers, router=router, langfuse=self.langfuse, store=self.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.redis is not None:
            receive = self._closing_redis(receive)
        await self.app(scope, receive, send)

    def _closing_redis(self, receive: Receive) -> Receive:
        """The lifespan's ``receive``, closing this worker's Redis pool at shutdown (after the stack's own
        shutdown work: the log queue is delivered before)."""
        redis = self.redis
        assert redis is not None

        async def closing() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await redis.aclose()
            return message

        return closing

    async def aclose(self) -> None:
        """Deliver queued logging events, then close the upstream pools (for embedders without lifespan)."""
        await self.log_queue.aclose()
        await self.langfuse.aclose()
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def load_prompt_store(config: Config) -> PromptStore:
    """The config's prompt store, loaded now: a broken prompt file stops start-up (``ConfigError``)."""
    store = PromptStore(prompts_path(config), config.prompts.check_interval)
    for file, why in store.broken.items():
        raise ConfigError(f"`prompts.path`: prompt file {file} is broken: {why}")
    return store


def create_app(config_path: str | os.PathLike[str], *, warn: bool = True) -> Gateway:
    """Load a YAML config and build its gateway; log unsupported keys in one warning."""
    config, unsupported = load_config(config_path)
    if unsupported and warn:
        log.warning("config keys not supported by asgi-llm, ignored: %s", ", ".join(unsupported))
    return Gateway(config)


def tune_gc(gen0: int = 20_000) -> None:
    """Server GC settings: freeze what start-up made, collect young objects less often.

    Reference counting frees almost everything a request allocates; the cyclic GC
    only finds cycles, yet at the default threshold (700) it runs every few requests
    and scans every long-lived object of the server each time. Freezing the start-up
    heap and raising the first threshold gave +17% throughput at c=64 (README, Speed).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, 20, 20)


def app_from_env() -> Gateway:
    """uvicorn factory for ``asgi-llm`` workers: the config path comes from $ASGI_LLM_CONFIG."""
    app = create_app(os.environ[CONFIG_ENV], warn=False)
    tune_gc()
    return app
