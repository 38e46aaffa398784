"""asgi-llm: an OpenAI-compatible LLM gateway built from small pure-ASGI layers.

The mechanism lives in this package's subpackages, each with one job:

- ``asgi_llm.hooks``: the hook API users subclass and receive (LiteLLM's names);
- ``asgi_llm.request``: one request's path (routes, context, ingestion, errors);
- ``asgi_llm.sse``: the SSE codec and stream assembly;
- ``asgi_llm.upstream``: the terminal app, routing, forwarding, the mock;
- ``asgi_llm.observe``: call records, logging events, cost, metrics;
- ``asgi_llm.prompts``: the prompt store and Langfuse;
- ``asgi_llm.config``: the config, loaded and checked;
- ``asgi_llm.shared``: state across workers and instances (rate limits, the response cache, Redis).

Policy lives in the ``middlewares`` package, built on those submodules (never on this
package's root, so importing it never runs into a cycle); the assembly
(``asgi_llm.gateway``) is the one bridge between the two. The names below are what
users import: the hook API (with LiteLLM's ``completion_cost``, which seed 003's
callbacks call as ``litellm.completion_cost``), the response views, the mechanism's
layers, the config and ``create_app``. Everything else is imported from its module.
"""

from __future__ import annotations

from asgi_llm.config.load import Config, ConfigError, load_config, parse_config
from asgi_llm.gateway import Gateway, create_app
from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.hooks.cache import DualCache
from asgi_llm.hooks.custom_logger import CustomLogger, get_formatted_prompt
from asgi_llm.hooks.llm_client import LLMClient, acompletion, aembedding, atext_completion
from asgi_llm.hooks.prompt_manager import (
    AllMessageValues,
    CustomPromptManagement,
    PromptManagementBase,
    StandardCallbackDynamicParams,
)
from asgi_llm.hooks.response_types import (
    Choices,
    Delta,
    EmbeddingResponse,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    TextCompletionResponse,
    Usage,
)
from asgi_llm.observe.cost import completion_cost
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.observe.sinks import LogSinks
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.error_layer import Errors
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.ingest import Ingest
from asgi_llm.request.replay import Replay
from asgi_llm.shared.limits import LimitTable
from asgi_llm.shared.redis_link import RedisLink
from asgi_llm.shared.state import SharedState
from asgi_llm.types import ASGIApp, Receive, Scope, Send
from asgi_llm.upstream.app import UpstreamApp
from asgi_llm.upstream.router import Router

__all__ = [
    "ASGIApp",
    "AllMessageValues",
    "Choices",
    "Config",
    "ConfigError",
    "CustomLogger",
    "CustomPromptManagement",
    "Delta",
    "DualCache",
    "EmbeddingResponse",
    "Errors",
    "Gateway",
    "GatewayError",
    "GatewayMetrics",
    "Ingest",
    "LLMClient",
    "LimitTable",
    "LogSinks",
    "Message",
    "ModelResponse",
    "ModelResponseStream",
    "PromptManagementBase",
    "Receive",
    "RedisLink",
    "Replay",
    "RequestContext",
    "Router",
    "Scope",
    "Send",
    "SharedState",
    "StandardCallbackDynamicParams",
    "StreamingChoices",
    "TextCompletionResponse",
    "UpstreamApp",
    "Usage",
    "UserAPIKeyAuth",
    "acompletion",
    "aembedding",
    "atext_completion",
    "completion_cost",
    "create_app",
    "get_context",
    "get_formatted_prompt",
    "load_config",
    "parse_config",
]
