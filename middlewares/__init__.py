"""asgi-llm's policy layers: one pure-ASGI middleware per module, built on ``asgi_llm``'s public API."""

from middlewares.auth import Auth

__all__ = ["Auth"]
