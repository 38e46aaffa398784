"""``UserAPIKeyAuth``: the authenticated caller, as LiteLLM hands it to hooks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class UserAPIKeyAuth:
    """Who is calling. ``api_key`` is a sha256 hash of the key, never the key itself."""

    api_key: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    end_user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    request_route: str | None = None


def key_digest(key: str) -> bytes:
    """The sha256 digest of a key: what keys are compared and stored by, never the key itself."""
    return hashlib.sha256(key.encode()).digest()


def hash_key(key: str) -> str:
    """The form a key is stored in (``keys[].key_hash``, ``UserAPIKeyAuth.api_key``): its sha256 hex digest."""
    return key_digest(key).hex()
