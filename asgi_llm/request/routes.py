"""The OpenAI routes the gateway knows, and how a scope's path maps to one.

Paths are matched after the mount prefix (``root_path``) and an optional ``/v1``,
so ``/v1/chat/completions``, ``/chat/completions`` and ``/llm/v1/chat/completions``
(mounted at ``/llm``) are the same route. ``call_type`` uses LiteLLM's names.
"""

from __future__ import annotations

from typing import Literal

from asgi_llm.types import Scope

BodyKind = Literal["json", "multipart"]


class Route:
    """One LLM route: the canonical path (``/chat/completions``), call type and body kind."""

    __slots__ = ("body", "call_type", "litellm_call_type", "path", "streams")

    def __init__(self, path: str, call_type: str, body: BodyKind = "json", streams: bool = False) -> None:
        self.path = path
        self.call_type = call_type
        # what LiteLLM's logging calls it (its proxy makes the async calls)
        self.litellm_call_type = {"completion": "acompletion", "embeddings": "aembedding"}.get(call_type,
                                                                                              "a" + call_type)
        self.body: BodyKind = body
        self.streams = streams


LLM_ROUTES: dict[str, Route] = {
    r.path: r
    for r in (
        Route("/chat/completions", "completion", streams=True),
        Route("/completions", "text_completion", streams=True),
        Route("/embeddings", "embeddings"),
        Route("/images/generations", "image_generation"),
        Route("/moderations", "moderation"),
        Route("/audio/transcriptions", "audio_transcription", body="multipart"),
        Route("/responses", "responses", streams=True),
    )
}


HEALTH_PATHS = frozenset({"/health/liveliness", "/health/readiness", "/health/liveness"})  # open without a key


def local_path(scope: Scope) -> str:
    """The path below the mount point and ``/v1``: ``/llm/v1/models`` -> ``/models``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path.startswith("/v1/"):
        path = path[3:]
    return path.rstrip("/") or "/"


def match_route(scope: Scope) -> Route | None:
    """The LLM route of a POST, else None (GETs, health, unknown paths)."""
    if scope["method"] != "POST":
        return None
    return LLM_ROUTES.get(local_path(scope))
