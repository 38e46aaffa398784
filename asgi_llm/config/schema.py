"""The config's schema: LiteLLM's keys, typed, plus asgi-llm's own sections.

Unknown keys are not rejected here (``config.load.check_keys`` lists them for one
start-up warning); values are converted with ``strict=False`` so ``os.environ/``
strings can fill numbers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class LiteLLMParams(msgspec.Struct, kw_only=True):
    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None  # azure/: the API version (or "v1"); anthropic/: the anthropic-version header
    azure_ad_token: str | None = None  # azure/: a bearer token instead of the api-key
    timeout: Positive | None = None
    stream_timeout: Positive | None = None
    max_retries: NonNegativeInt | None = None
    mock_response: str | None = None
    # prompt management: defaults for requests to this model (the request body wins)
    prompt_id: str | None = None
    prompt_variables: dict[str, Any] | None = None
    prompt_label: str | None = None
    prompt_version: int | None = None
    langfuse_public_key: str | None = None
    langfuse_secret_key: str | None = None
    langfuse_host: str | None = None
    weight: Positive | None = None  # simple-shuffle: this deployment's share of its group's calls
    rpm: PositiveInt | None = None  # this deployment's requests per minute; at it the router skips it
    tpm: PositiveInt | None = None  # this deployment's tokens per minute


class ModelEntry(msgspec.Struct, kw_only=True):
    model_name: str
    litellm_params: LiteLLMParams
    model_info: dict[str, Any] = msgspec.field(default_factory=dict)


class CacheParams(msgspec.Struct, kw_only=True):
    """``litellm_settings.cache_params``: where shared state lives and what the response cache keeps.

    ``type`` unset: Redis when a host or URL is given here, in ``router_settings`` or in
    ``REDIS_*``, else ``local`` (this process's memory, bounded by ``max_entries`` and ``max_bytes``).
    """

    type: Literal["local", "redis"] | None = None
    host: str | None = None
    port: Annotated[int, msgspec.Meta(gt=0, lt=65536)] | None = None
    password: str | None = None
    url: str | None = None
    db: NonNegativeInt | None = None
    namespace: str | None = None  # prefixes every cache key (LiteLLM's `namespace:<hash>`)
    ttl: Positive | None = None  # seconds an answer is kept; None: until evicted (local) / 24 h (Redis)
    supported_call_types: list[str] | None = None  # None: every cacheable call; []: cache nothing
    mode: Literal["default_on", "default_off"] = "default_on"  # default_off: only `cache: {use-cache: true}`
    scope: Literal["global", "team", "key"] = "team"  # who may be answered from whose cached answers
    max_entries: PositiveInt = 10_000  # `local` bound
    max_bytes: PositiveInt = 256 * 1024 * 1024  # `local` bound, on the stored answers' size
    max_entry_bytes: PositiveInt = 4 * 1024 * 1024  # a larger answer is not stored
    socket_timeout: Positive = 0.5  # seconds a Redis command may take before it counts as a fault
    socket_connect_timeout: Positive = 0.5
    retry_interval: Positive = 1.0  # after a Redis fault, seconds before it is tried again
    default_in_memory_ttl: Positive = 1.0  # DualCache: seconds a value read from Redis is served from memory


Fallbacks = list[dict[str, list[str]]]  # LiteLLM's shape: [{"gpt-4o": ["gpt-4o-mini", "llama"]}]
Strategy = Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing",
                   "usage-based-routing-v2"]


class LiteLLMSettings(msgspec.Struct, kw_only=True):
    callbacks: str | list[str] | None = None  # `module.instance` paths to CustomLogger objects
    success_callback: str | list[str] | None = None  # `module.function` paths: (kwargs, response, start, end)
    failure_callback: str | list[str] | None = None
    input_callback: str | list[str] | None = None  # `module.function` paths: (kwargs)
    request_timeout: Positive = 600.0  # LLM answers are slow: LiteLLM's default total timeout
    stream_timeout: Positive | None = None  # longest silence inside a stream; None: request_timeout
    num_retries: NonNegativeInt = 0
    fallbacks: Fallbacks | None = None  # as router_settings' (router_settings wins when both are set)
    default_fallbacks: list[str] | None = None
    context_window_fallbacks: Fallbacks | None = None
    content_policy_fallbacks: Fallbacks | None = None
    cache: bool = False  # the response cache (and, with Redis, shared limits and DualCache)
    cache_params: CacheParams = msgspec.field(default_factory=CacheParams)


class RouterSettings(msgspec.Struct, kw_only=True):
    """The ``router_settings`` keys asgi-llm uses (the rest are listed as unsupported)."""

    routing_strategy: Strategy = "simple-shuffle"
    fallbacks: Fallbacks | None = None  # a group's fallback groups, tried in order once it is exhausted
    default_fallbacks: list[str] | None = None  # for every group without fallbacks of its own
    context_window_fallbacks: Fallbacks | None = None  # on a context-length error
    content_policy_fallbacks: Fallbacks | None = None  # on a content-policy refusal
    allowed_fails: NonNegativeInt = 3  # failures of a deployment in a minute before it cools down
    cooldown_time: NonNegative = 5.0  # seconds a deployment is skipped once cooling down
    disable_cooldowns: bool = False
    num_retries: NonNegativeInt | None = None  # LiteLLM's router-level retries (litellm_settings.num_retries)
    timeout: Positive | None = None  # one call's whole fallback chain, until its answer starts; past it 504

    redis_host: str | None = None
    redis_port: Annotated[int, msgspec.Meta(gt=0, lt=65536)] | None = None
    redis_password: str | None = None
    redis_url: str | None = None
    redis_db: NonNegativeInt | None = None


class UpstreamSettings(msgspec.Struct, kw_only=True):
    """Our own knobs for the shared upstream connection pool (not a LiteLLM section)."""

    max_connections: NonNegativeInt = 0  # 0: no cap but the open-files limit; a cap makes calls wait for a slot
    pool_timeout: Positive = 30.0  # with a cap: the longest a call waits for a connection; then 503
    max_connections_per_host: NonNegativeInt = 0  # 0: no per-host cap below max_connections
    connect_timeout: Positive = 10.0
    keepalive_timeout: Positive = 30.0
    retry_backoff: NonNegative = 0.5  # first retry's wait in seconds, doubled per attempt
    max_retry_wait: NonNegative = 30.0  # cap on any wait, Retry-After included


class PromptSettings(msgspec.Struct, kw_only=True):
    """``prompts:`` (asgi-llm's own section): the prompt store folder and prompt caching."""

    path: str | None = None  # folder (or file) of prompt YAML, relative to the config file
    check_interval: NonNegative = 1.0  # seconds between checks of the files for changes
    langfuse_cache_ttl: NonNegative = 60.0  # seconds a Langfuse prompt is served before a background refresh


class GeneralSettings(msgspec.Struct, kw_only=True):
    master_key: str | None = None
    enforce_user_param: bool = False
    moderation_timeout: Positive | None = None  # seconds to wait for moderation hooks; None: no limit
    moderation_timeout_policy: Literal["fail_closed", "fail_open"] = "fail_closed"
    max_request_size_mb: Positive = 32.0
    max_request_header_kb: Positive = 64.0  # all request headers together; past it 431
    request_body_timeout: Positive = 30.0  # longest pause between a request body's chunks; past it 408
    max_messages: PositiveInt = 10_000  # messages plus content parts in one chat request; past it 400
    metrics: bool = False  # serve /metrics (Prometheus); protected by master_key when set
    call_headers: bool = False  # x-asgi-llm-call-id/-overhead-ms even without callbacks, metrics or prices
    log_queue_size: PositiveInt = 10_000  # logging events waiting for callbacks; when full, the oldest is dropped
    log_callback_timeout: Positive = 10.0  # seconds one logging callback may take per event
    upstream: UpstreamSettings = msgspec.field(default_factory=UpstreamSettings)
    max_parallel_requests: PositiveInt | None = None  # calls in flight on the whole gateway (all instances)
    global_max_parallel_requests: PositiveInt | None = None  # LiteLLM's name for the same; the lower one holds
    rate_limit_fail: Literal["open", "closed"] = "open"  # limits when Redis fails: admit, or answer 503
    rate_limit_lease_ttl: Positive = 60.0  # a parallel-request lease not renewed for this long is freed
    max_open_streams: PositiveInt | None = None  # streams open in one worker; past it new calls get 503
    max_event_loop_lag: Positive | None = None  # seconds a worker's loop may lag; past it new calls get 503
    background_health_checks: bool = False  # probe every deployment every health_check_interval seconds
    health_check_interval: Positive = 300.0


class Limits(msgspec.Struct, kw_only=True):
    """Rate limits of a key or a team: per 60-second window (requests, tokens) and in flight."""

    rpm_limit: PositiveInt | None = None
    tpm_limit: PositiveInt | None = None
    max_parallel_requests: PositiveInt | None = None
    model_rpm_limit: dict[str, PositiveInt] = msgspec.field(default_factory=dict)
    model_tpm_limit: dict[str, PositiveInt] = msgspec.field(default_factory=dict)


class Team(Limits, kw_only=True):
    """``teams:`` (asgi-llm's own section): limits shared by every key with this ``team_id``."""

    team_id: str


class VirtualKey(Limits, kw_only=True):
    """A client key, stored only as the sha256 hex digest of the key (``asgi-llm --hash-key``)."""

    key_hash: str
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: list[str] = msgspec.field(default_factory=list)  # empty: every model
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Config(msgspec.Struct, kw_only=True):
    model_list: list[ModelEntry] = msgspec.field(default_factory=list)
    keys: list[VirtualKey] = msgspec.field(default_factory=list)
    teams: list[Team] = msgspec.field(default_factory=list)
    prompts: PromptSettings = msgspec.field(default_factory=PromptSettings)
    litellm_settings: LiteLLMSettings = msgspec.field(default_factory=LiteLLMSettings)
    general_settings: GeneralSettings = msgspec.field(default_factory=GeneralSettings)
    router_settings: RouterSettings = msgspec.field(default_factory=RouterSettings)
    path: str | None = None  # where it was loaded from, for paths relative to it
