"""The per-request context: parsed once by ``Ingest``, shared by every layer.

It lives at ``scope["state"][CONTEXT_KEY]``. ``body`` is the source of truth (a dict,
so fields no Struct knows survive); a layer that changes it calls ``mark_changed``
and the body is encoded once, where it leaves the stack. ``replay_receive`` gives a
foreign ASGI app the current body, once, then the real ``receive``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.request.routes import Route
from asgi_llm.types import Message, Receive, Scope

CONTEXT_KEY = "asgi_llm"
_encode = msgspec.json.Encoder().encode


class RequestContext:
    """What the stack knows about one LLM request."""

    __slots__ = ("auth", "body", "changed", "consumed", "deployment", "metadata", "notes", "raw", "route", "start",
                 "stream")

    def __init__(self, route: Route, raw: bytes | None, body: dict[str, Any] | None, stream: bool) -> None:
        self.route = route
        self.raw = raw
        self.body = body
        self.stream = stream
        self.changed = False
        self.consumed = False  # the terminal app took the body from here, not from receive
        self.auth: Any = None  # the caller's UserAPIKeyAuth, set by the auth layer
        self.deployment: Any = None  # the deployment a layer chose (rate limits), else the router picks
        self.metadata: dict[str, Any] = {}
        self.notes: dict[str, Any] = {}  # what later layers want to tell earlier ones
        self.start = time.perf_counter()

    @property
    def call_type(self) -> str:
        return self.route.call_type

    @property
    def model(self) -> str | None:
        model = self.body.get("model") if self.body is not None else None
        return model if isinstance(model, str) else None

    @property
    def end_user(self) -> str | None:
        """The body's ``user`` (the end user's id), when it is a string."""
        user = self.body.get("user") if self.body is not None else None
        return user if isinstance(user, str) else None

    def caller(self, route: str) -> UserAPIKeyAuth:
        """The caller hooks are handed: the one the auth layer recorded, else an anonymous
        one (made once and kept) that still carries ``end_user_id`` and ``request_route``."""
        if self.auth is None:
            self.auth = UserAPIKeyAuth(end_user_id=self.end_user, request_route=route)
        auth: UserAPIKeyAuth = self.auth
        return auth

    def mark_changed(self) -> None:
        self.changed = True

    def body_bytes(self) -> bytes:
        """The body as it stands now: the original bytes unless a layer changed it."""
        if self.body is None:
            raise RuntimeError("this request's body is streamed, not held in the context")
        if self.changed or self.raw is None:
            return _encode(self.body)
        return self.raw


def get_context(scope: Scope) -> RequestContext | None:
    state = scope.get("state")
    return state.get(CONTEXT_KEY) if state else None


def scope_state(scope: Scope) -> dict[str, Any]:
    """``scope["state"]``, made when the server gave none: where layers leave things for each other."""
    state: dict[str, Any] | None = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    return state


def set_context(scope: Scope, ctx: RequestContext) -> None:
    scope_state(scope)[CONTEXT_KEY] = ctx


def replay_receive(ctx: RequestContext, receive: Receive) -> Receive:
    """A ``receive`` that yields the context's current body once, then delegates.

    Delegating keeps ``http.disconnect`` flowing to whoever waits for it. When the
    terminal app took the body from the context (``consumed``), nothing is replayed.
    """
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent or ctx.consumed or ctx.body is None:
            return await receive()
        sent = True
        return {"type": "http.request", "body": ctx.body_bytes(), "more_body": False}

    return replay
