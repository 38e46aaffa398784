"""asgi-llm's policy layers: one pure-ASGI middleware per module, built on ``asgi_llm``'s public API."""

from middlewares.auth import Auth, hash_key
from middlewares.call_hooks import CallHooks
from middlewares.call_logging import CallLogging
from middlewares.metrics_endpoint import MetricsEndpoint
from middlewares.moderation import Moderation
from middlewares.stream_hooks import StreamHooks
from middlewares.user_param import EnforceUserParam

__all__ = ["Auth", "CallHooks", "CallLogging", "EnforceUserParam", "MetricsEndpoint", "Moderation", "StreamHooks",
           "hash_key"]
