"""The default stack composed in plain code: ``uvicorn examples.app:app``.

Every layer is an ordinary ASGI class; reorder, drop or add your own the same way.
The config is the same LiteLLM-shaped mapping the YAML file holds.
"""

from __future__ import annotations

from typing import Any

from asgi_llm import Errors, GatewayMetrics, Ingest, LogSinks, Router, UpstreamApp, parse_config
from middlewares import Auth, CallLogging, MetricsEndpoint

config = parse_config({
    "model_list": [
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "mock/gpt-4o-mini"}},
        {"model_name": "echo", "litellm_params": {"model": "mock/echo", "mock_response": "Hello!"}},
    ],
})

COSTS: list[tuple[str, Any]] = []


def record_cost(kwargs: dict[str, Any], completion_response: Any, start_time: Any, end_time: Any) -> None:
    """A plain success callback (seed 003's signature), registered in code below."""
    COSTS.append((kwargs["litellm_call_id"], kwargs["standard_logging_object"]["total_tokens"]))


upstream = UpstreamApp(Router(config))
metrics = GatewayMetrics(["gpt-4o-mini", "echo"])
# request side runs outer -> inner: MetricsEndpoint, CallLogging, Errors, Ingest, UpstreamApp
app = MetricsEndpoint(CallLogging(Errors(Ingest(upstream)), sinks=LogSinks(success=[record_cost]), metrics=metrics),
                      metrics=metrics)


def with_master_key(key: str) -> Errors:
    """The same stack with the master-key check between ingestion and forwarding."""
    return Errors(Ingest(Auth(UpstreamApp(Router(config)), master_key=key)))
