"""``Auth``: require the gateway's master key and record who is calling.

Contract: every request except the health routes must carry the key as
``Authorization: Bearer <key>`` (or ``api-key: <key>``, as Azure clients send it);
a missing or wrong key gets 401 before anything else runs. The comparison is in
constant time over sha256 digests, so neither content nor length leaks through
timing. The caller is stored on the request context as ``UserAPIKeyAuth`` with
the key's hash, never the key. The key itself is never forwarded (the terminal
app sends only the deployment's key).
"""

from __future__ import annotations

import hashlib
import hmac

from asgi_llm import GatewayError, Receive, Scope, Send, UserAPIKeyAuth, get_context, local_path
from asgi_llm.types import ASGIApp

OPEN_PATHS = frozenset({"/health/liveliness", "/health/readiness", "/health/liveness"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(scope: Scope) -> str | None:
    """The key the client sent: ``Authorization: Bearer`` first, then ``api-key``."""
    api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"api-key":
            api_key = bytes(value).decode("latin-1").strip()
    return api_key or None


class Auth:
    """401 unless the master key is presented; see the module docstring."""

    def __init__(self, app: ASGIApp, *, master_key: str) -> None:
        if not master_key:
            raise ValueError("Auth needs a non-empty master_key")
        self.app = app
        self._digest = hashlib.sha256(master_key.encode()).digest()
        self._hash = self._digest.hex()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or local_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None:
            raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer <key>'.",
                               code="missing_api_key")
        if not hmac.compare_digest(hashlib.sha256(key.encode()).digest(), self._digest):
            raise GatewayError(401, "Invalid API key.", code="invalid_api_key")
        ctx = get_context(scope)
        if ctx is not None:
            body_user = ctx.body.get("user") if ctx.body is not None else None
            ctx.auth = UserAPIKeyAuth(api_key=self._hash, key_alias="master_key", user_id="default_user_id",
                                      end_user_id=body_user if isinstance(body_user, str) else None,
                                      request_route=scope["path"])
        await self.app(scope, receive, send)
