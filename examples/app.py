"""The default stack composed in plain code: ``uvicorn examples.app:app``.

Every layer is an ordinary ASGI class; reorder, drop or add your own the same way.
The config is the same LiteLLM-shaped mapping the YAML file holds.
"""

from __future__ import annotations

from asgi_llm import Errors, Ingest, Router, UpstreamApp, parse_config
from middlewares import Auth

config = parse_config({
    "model_list": [
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "mock/gpt-4o-mini"}},
        {"model_name": "echo", "litellm_params": {"model": "mock/echo", "mock_response": "Hello!"}},
    ],
})

upstream = UpstreamApp(Router(config))
app = Errors(Ingest(upstream))  # request side runs outer -> inner: Errors, Ingest, UpstreamApp


def with_master_key(key: str) -> Errors:
    """The same stack with the master-key check between ingestion and forwarding."""
    return Errors(Ingest(Auth(UpstreamApp(Router(config)), master_key=key)))
