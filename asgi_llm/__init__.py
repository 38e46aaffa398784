"""asgi-llm: an OpenAI-compatible LLM gateway built from small pure-ASGI layers.

The mechanism lives here (context, ingestion, errors, the terminal app, config);
policy lives in the ``middlewares`` package, built only on the names exported below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgi_llm.auth_types import UserAPIKeyAuth
from asgi_llm.cache import DualCache
from asgi_llm.callbacks import load_callbacks
from asgi_llm.chunks import chunk_text, raw_chunk_text
from asgi_llm.config import Config, ConfigError, VirtualKey, load_config, parse_config
from asgi_llm.context import CONTEXT_KEY, RequestContext, get_context, replay_receive, scope_state, set_context
from asgi_llm.cost import completion_cost, estimate_tokens, prices_of, register_prices, usage_tokens
from asgi_llm.error_layer import Errors
from asgi_llm.errors import ERROR_KEY, GatewayError, detail_message, send_json_error, to_gateway_error
from asgi_llm.hooks import CustomLogger, get_formatted_prompt, overrides, with_hook
from asgi_llm.ingest import Ingest
from asgi_llm.langfuse import LangfusePrompts
from asgi_llm.llm_client import LLMClient, acompletion, aembedding, atext_completion
from asgi_llm.log_queue import LogQueue
from asgi_llm.log_record import CallRecord, new_call_id
from asgi_llm.log_sinks import LogSinks, Sink
from asgi_llm.log_standard import standard_logging_object
from asgi_llm.metrics import GatewayMetrics
from asgi_llm.prompt_store import PromptStore
from asgi_llm.prompts import (
    AllMessageValues,
    CustomPromptManagement,
    PromptManagementBase,
    StandardCallbackDynamicParams,
    accepts,
    is_manager,
    manager_name,
    run_manager,
)
from asgi_llm.reject import send_rejection
from asgi_llm.replay import Replay
from asgi_llm.response import LazyObj, Obj, ObjList, unwrap, wrap
from asgi_llm.response_types import (
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
from asgi_llm.router import Deployment, Router, mask_key
from asgi_llm.routes import LLM_ROUTES, Route, local_path, match_route
from asgi_llm.sse import SSEDecoder, SSEEvent, is_sse, whole_events
from asgi_llm.trace import TRACE_KEY, UpstreamTrace, get_trace, set_trace
from asgi_llm.types import DONE, ASGIApp, Receive, Scope, Send
from asgi_llm.types import Message as ASGIMessage
from asgi_llm.upstream import UpstreamApp
from asgi_llm.usage_tap import UsageTap, traced_send

if TYPE_CHECKING:
    from asgi_llm.gateway import Gateway, create_app

__all__ = [
    "LLMClient", "acompletion", "aembedding", "atext_completion",
    "ERROR_KEY", "TRACE_KEY", "CallRecord", "LazyObj", "GatewayMetrics", "LogQueue", "LogSinks", "Sink",
    "UpstreamTrace", "is_sse", "whole_events", "scope_state",
    "UsageTap", "completion_cost", "estimate_tokens", "get_trace", "mask_key", "new_call_id", "prices_of",
    "register_prices", "set_trace", "standard_logging_object", "traced_send", "usage_tokens",
    "CONTEXT_KEY", "DONE", "LLM_ROUTES", "ASGIApp", "AllMessageValues", "Config", "ConfigError", "CustomLogger",
    "CustomPromptManagement", "Deployment", "DualCache", "LangfusePrompts", "PromptManagementBase", "PromptStore",
    "StandardCallbackDynamicParams", "accepts", "is_manager", "manager_name", "run_manager",
    "Errors", "Gateway", "GatewayError", "Ingest", "Message", "ASGIMessage", "Choices", "Delta",
    "EmbeddingResponse", "ModelResponse", "ModelResponseStream", "StreamingChoices", "TextCompletionResponse", "Usage",
    "Obj", "ObjList", "Receive", "Replay",
    "RequestContext", "Route", "Router", "SSEDecoder", "SSEEvent", "Scope", "Send", "UpstreamApp", "UserAPIKeyAuth",
    "VirtualKey", "chunk_text", "create_app", "detail_message", "get_context", "get_formatted_prompt",
    "load_callbacks", "load_config",
    "local_path", "match_route", "overrides", "parse_config", "raw_chunk_text", "replay_receive", "send_json_error",
    "send_rejection", "set_context", "to_gateway_error", "unwrap", "with_hook", "wrap",
]


def __getattr__(name: str) -> Any:
    # The assembly imports `middlewares`, which imports this package: load it on first use.
    if name in ("Gateway", "create_app"):
        from asgi_llm import gateway

        return getattr(gateway, name)
    raise AttributeError(name)
