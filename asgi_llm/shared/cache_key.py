"""The response cache's key and a request's cache controls.

The key is the sha256 of the canonical request: the call type, the tenant (by
``cache_params.scope``), the model group and every field that can change the answer,
encoded with sorted keys, so field order does not matter. Fields that cannot change
the answer are left out: how it is delivered (``stream``, ``stream_options``), who
asks (``user``, ``metadata``) and the gateway's own fields (except ``mock_response``,
which is the answer).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from asgi_llm.request.http import header
from asgi_llm.types import Scope
from asgi_llm.upstream.forward import STRIPPED_FIELDS

IGNORED = (STRIPPED_FIELDS | {"stream", "stream_options", "user"}) - {"mock_response"}
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def tenant_of(scope: str, key_hash: str | None, team_id: str | None) -> str:
    """Whose answers a request may get: everyone's (``global``), its team's (a key without a team is
    its own tenant) or its key's."""
    if scope == "global":
        return ""
    if scope == "team" and team_id is not None:
        return "team:" + team_id
    return "key:" + key_hash if key_hash else ""


def cache_key(call_type: str, tenant: str, model: str, body: dict[str, Any]) -> str:
    fields = {k: v for k, v in body.items() if k not in IGNORED}
    fields["model"] = model
    return hashlib.sha256(_encode_sorted([call_type, tenant, fields])).hexdigest()


@dataclass(slots=True)
class CacheControl:
    """One request's cache controls: body ``cache: {...}`` (LiteLLM's) and ``Cache-Control``."""

    read: bool = True  # no-cache: do not answer from the cache
    store: bool = True  # no-store: do not keep this answer
    ttl: float | None = None
    max_age: float | None = None  # s-maxage: only entries younger than this
    namespace: str | None = None
    opted_in: bool = False  # use-cache: for `mode: default_off`


def _seconds(value: Any) -> float | None:
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return found if found >= 0 else None


def cache_control(scope: Scope, body: dict[str, Any] | None) -> CacheControl:
    control = CacheControl()
    given = body.get("cache") if body is not None else None
    if isinstance(given, dict):
        control.read = not given.get("no-cache")
        control.store = not given.get("no-store")
        control.ttl = _seconds(given.get("ttl"))
        control.max_age = _seconds(given.get("s-maxage"))
        namespace = given.get("namespace")
        control.namespace = namespace if isinstance(namespace, str) and namespace else None
        control.opted_in = bool(given.get("use-cache"))
    raw = header(scope, b"cache-control")
    if raw:
        for part in raw.decode("latin-1").lower().split(","):
            name, _, value = part.strip().partition("=")
            if name == "no-cache":
                control.read = False
            elif name == "no-store":
                control.store = False
            elif name == "s-maxage" and _seconds(value) is not None:
                control.max_age = _seconds(value)
    return control
