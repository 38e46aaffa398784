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
        self._selected: dict[str, tuple[Any, str, dict[str, Any], dict[str, Any]]] = {}
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

    def select(self, model: str) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
        """For a model: the manager it names (or None), the model to route to, its prompt defaults, and
        the Langfuse settings among them. Cached for configured names only, so clients cannot grow it."""
        found = self._selected.get(model)
        if found is not None:
            return found
        manager, target, defaults = None, model, {}
        dep = self.router.find(model)
        if dep is not None:
            defaults = dep.prompt
            if dep.provider == "langfuse" and "langfuse" in self.by_name:
                manager, target = self.by_name["langfuse"], dep.model
        else:
            prefix, _, rest = model.partition("/")
            if rest and prefix in self.by_name:
                found_rest = self.router.find(rest)
                manager, target, defaults = self.by_name[prefix], rest, found_rest.prompt if found_rest else {}
        langfuse = {k: v for k, v in defaults.items() if k.startswith("langfuse_")}
        found = (manager, target, defaults, langfuse)
        if dep is not None:
            self._selected[model] = found
        return found

    async def apply(self, ctx: RequestContext) -> None:
        body = ctx.body
        assert body is not None
        manager, target, defaults, langfuse = self.select(ctx.model or "")
        present = body.keys() & PROMPT_SET
        if not present and not defaults and manager is None:
            return  # the common case: nothing here concerns prompts
        if present:
            ctx.mark_changed()  # the prompt fields leave the body
        pop, get = body.pop, defaults.get
        prompt_id = pop("prompt_id") if "prompt_id" in present else get("prompt_id")
        variables = pop("prompt_variables") if "prompt_variables" in present else get("prompt_variables")
        dynamic = {**langfuse,
                   "prompt_label": pop("prompt_label") if "prompt_label" in present else get("prompt_label"),
                   "prompt_version": pop("prompt_version") if "prompt_version" in present else get("prompt_version")}
        if manager is None:
            if prompt_id is None:
                return
            for candidate in self.managers:
                if accepts(candidate, prompt_id, dynamic):
                    manager = candidate
                    break
            else:
                manager = self.fallback
                if manager is None:
                    return
        params = {k: v for k, v in body.items() if k not in NOT_PARAMS}
        new_model, messages, new_params = await run_manager(
            manager, target, body.get("messages") or [], params, prompt_id, variables, dynamic)
        if new_params is not params:  # a manager may hand back the very dict it was given
            body.update(new_params)
        body["model"], body["messages"] = new_model, messages
        ctx.stream = body.get("stream") is True
        ctx.mark_changed()
