"""asgi-llm's policy layers: one pure-ASGI middleware per module, built on ``asgi_llm``'s public API."""

from middlewares.auth import Auth, hash_key
from middlewares.call_hooks import CallHooks
from middlewares.moderation import Moderation
from middlewares.user_param import EnforceUserParam

__all__ = ["Auth", "CallHooks", "EnforceUserParam", "Moderation", "hash_key"]
