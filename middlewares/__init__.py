"""asgi-llm's policy layers: one pure-ASGI middleware per module, built on the mechanism's modules
(``asgi_llm.request``, ``asgi_llm.hooks``...), exactly as a user's own middleware would be."""

from asgi_llm.hooks.auth import hash_key
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

__all__ = ["Admission", "Auth", "CallHooks", "CallLogging", "EnforceUserParam", "LimitsAndCache", "MetricsEndpoint",
           "Moderation", "PromptTemplating", "StreamHooks", "hash_key"]
