"""``PromptTemplating``: ``prompt_id`` + ``prompt_variables`` through prompt managers.

For chat completions. The prompt fields (``prompt_id``, ``prompt_variables``,
``prompt_label``, ``prompt_version``) come from the request body or, as defaults,
from the model's ``litellm_params``; the body wins. They are never sent upstream.

Which manager answers:
1. a model whose deployment is ``langfuse/<model>``, or a model ``<name>/<model>``
   where ``name`` is a manager's ``custom_logger_name``/``integration_name``: that
   manager, and the request then routes to ``<model>``;
2. otherwise, when a ``prompt_id`` is present, the managers in order (the prompt
   store first, for the ids it holds; then callbacks in config order); the first
   that accepts it answers. An id nobody accepts goes to the ``fallback`` (the
   store, which answers 404 naming it); without a store it is dropped.

The manager's ``(model, messages, non_default_params)`` all apply: ``model`` routes
like a client's model (unknown: 404 naming it), ``messages`` replace the request's,
and the params are merged into the request. Langfuse credentials and hosts come
only from the config or the environment, never from a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgi_llm import (
    ASGIApp,
    Receive,
    RequestContext,
    Router,
    Scope,
    Send,
    accepts,
    get_context,
    manager_name,
    run_manager,
)

PROMPT_FIELDS = ("prompt_id", "prompt_variables", "prompt_label", "prompt_version")
PROMPT_SET = frozenset(PROMPT_FIELDS)
NOT_PARAMS = frozenset({"model", "messages", "metadata", *PROMPT_FIELDS})


class PromptTemplating:
    """Apply the selected prompt manager to chat requests; see the module docstring."""

    def __init__(self, app: ASGIApp, *, managers: Sequence[Any], router: Router, langfuse: Any = None,
                 fallback: Any = None) -> None:
        self.app = app
        self.fallback = fallback
        self.router = router
        self.managers = list(managers)
        self.by_name = {name: m for m in self.managers if (name := manager_name(m))}
        if langfuse is not None:
            self.by_name.setdefault("langfuse", langfuse)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is not None and ctx.body is not None and ctx.call_type == "completion":
            await self.apply(ctx)
        await self.app(scope, receive, send)

    def select(self, model: str) -> tuple[Any, str, dict[str, Any]]:
        """The manager named by the model (or None), the model to route to, and the model's defaults."""
        dep = self.router.find(model)
        if dep is not None:
            manager = self.by_name.get("langfuse") if dep.provider == "langfuse" else None
            return manager, dep.model if manager is not None else model, dep.prompt
        prefix, _, rest = model.partition("/")
        if rest and prefix in self.by_name:
            found = self.router.find(rest)
            return self.by_name[prefix], rest, found.prompt if found is not None else {}
        return None, model, {}

    async def apply(self, ctx: RequestContext) -> None:
        body = ctx.body
        assert body is not None
        model = ctx.model or ""
        manager, target, defaults = self.select(model)
        present = body.keys() & PROMPT_SET
        if not present and not defaults and manager is None:
            return  # the common case: nothing here concerns prompts
        fields = {f: body.pop(f) if f in present else defaults.get(f) for f in PROMPT_FIELDS}
        if present:
            ctx.mark_changed()  # the prompt fields left the body
        prompt_id = fields["prompt_id"]
        dynamic = {k: v for k, v in defaults.items() if k.startswith("langfuse_")} if defaults else {}
        dynamic["prompt_label"], dynamic["prompt_version"] = fields["prompt_label"], fields["prompt_version"]
        if manager is None:
            if prompt_id is None:
                return
            manager = next((m for m in self.managers if accepts(m, prompt_id, dynamic)), self.fallback)
            if manager is None:
                return
        params = {k: v for k, v in body.items() if k not in NOT_PARAMS}
        new_model, messages, new_params = await run_manager(
            manager, target, list(body.get("messages") or []), params, prompt_id, fields["prompt_variables"], dynamic)
        body.update(new_params)
        body["model"], body["messages"] = new_model, messages
        ctx.stream = body.get("stream") is True
        ctx.mark_changed()
