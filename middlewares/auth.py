"""``Auth``: require a known key and record who is calling.

Contract: every request except the health routes must carry a key as
``Authorization: Bearer <key>`` (or ``api-key: <key>``, as Azure clients send it):
the master key or one of the virtual ``keys`` (stored only as sha256 digests). A
missing or unknown key gets 401 before anything else runs; a virtual key calling a
model outside its ``models`` gets 403. The master key is compared in constant time
over digests; virtual keys are found by their digest, so no key is ever held in
memory or compared as text. An ``Authorization`` header with another scheme than
``Bearer`` gets a 401 saying so. For a multipart upload the form's ``model`` is read
(without buffering the upload) before anything goes on, so a key's ``models`` holds
there too. The caller is stored on the request context as
``UserAPIKeyAuth`` with the key's hash, never the key, and the key itself is never
forwarded (the terminal app sends only the deployment's key). ``/health`` (every
deployment and its ``api_base``) takes only the master key.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from asgi_llm.config.schema import VirtualKey
from asgi_llm.hooks.auth import UserAPIKeyAuth, key_digest
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.request.http import header
from asgi_llm.request.ingest import ClientDisconnected
from asgi_llm.request.multipart import upload_model
from asgi_llm.request.routes import HEALTH_PATHS, local_path
from asgi_llm.types import ASGIApp, Receive, Scope, Send


def presented_key(scope: Scope) -> str | None:
    """The key the client sent: ``Authorization: Bearer`` first, then ``api-key``. An
    ``Authorization`` header of another scheme, with no ``api-key``, gets a 401 that says so."""
    authorization = header(scope, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = (header(scope, b"api-key") or b"").decode("latin-1").strip()
    if not api_key and authorization is not None:
        raise GatewayError(401, "Malformed Authorization header: send the key as 'Authorization: Bearer <key>' "
                           "(the 'Bearer' scheme is required).", code="invalid_auth_scheme")
    return api_key or None


def check_model(key: VirtualKey, model: str | None) -> None:
    """403 when ``key`` is limited to some models and ``model`` is not one of them."""
    if key.models and model is not None and model not in key.models:
        raise GatewayError(403, f"This key may not use model {model!r}; it may use: {', '.join(key.models)}.",
                           param="model", code="model_not_allowed")


class Auth:
    """401 unless a known key is presented, 403 for a model the key may not use."""

    def __init__(self, app: ASGIApp, *, master_key: str | None = None, keys: Sequence[VirtualKey] = ()) -> None:
        if not master_key and not keys:
            raise ValueError("Auth needs a master_key or at least one virtual key")
        self.app = app
        self._master = key_digest(master_key) if master_key else None
        self._keys = {k.key_hash: k for k in keys}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or local_path(scope) in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None:
            raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer <key>'.",
                               code="missing_api_key")
        digest = key_digest(key)
        virtual = None
        if self._master is None or not hmac.compare_digest(digest, self._master):
            virtual = self._keys.get(digest.hex())
            if virtual is None:
                raise GatewayError(401, "Invalid API key.", code="invalid_api_key")
            if local_path(scope) == "/health":  # it names every deployment and api_base
                raise GatewayError(403, "/health needs the master key.", code="master_key_required")
        ctx = get_context(scope)
        if ctx is not None:
            ctx.auth = self.caller(ctx, digest.hex(), virtual, scope["path"])
            if ctx.body is None and virtual is not None and virtual.models:  # an upload: its model is in the form
                try:
                    model, receive = await upload_model(scope, receive)
                except ClientDisconnected:
                    return
                if model is None:
                    raise GatewayError(400, "Multipart body has no `model` field before the file.", param="model",
                                       code="missing_model")
                check_model(virtual, model)
        await self.app(scope, receive, send)

    @staticmethod
    def caller(ctx: RequestContext, key_hash: str, key: VirtualKey | None, route: str) -> UserAPIKeyAuth:
        if key is None:
            return UserAPIKeyAuth(api_key=key_hash, key_alias="master_key", user_id="default_user_id",
                                  end_user_id=ctx.end_user, request_route=route)
        check_model(key, ctx.model)
        return UserAPIKeyAuth(api_key=key_hash, key_alias=key.key_alias, user_id=key.user_id, team_id=key.team_id,
                              end_user_id=ctx.end_user, metadata=dict(key.metadata), models=list(key.models),
                              rpm_limit=key.rpm_limit, tpm_limit=key.tpm_limit,
                              max_parallel_requests=key.max_parallel_requests, request_route=route)
