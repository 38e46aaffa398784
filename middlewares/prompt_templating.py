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
   that accepts it answers. An id nobody accepts gets the store's 404 naming it;
   without a store it is dropped.

The built-in store is asked directly: it answers in place, with one freshness
check and no coroutine. Other managers go through LiteLLM's protocol
(``should_run_prompt_management``, the async method or the sync one in a thread).

The manager's ``(model, messages, non_default_params)`` all apply: ``model`` routes
like a client's model (unknown: 404 naming it), ``messages`` replace the request's,
and the params are merged into the request. Langfuse credentials and hosts come
only from the config or the environment, never from a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from asgi_llm.hooks.prompt_manager import accepts, manager_name, run_manager
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.errors import GatewayError
from asgi_llm.types import ASGIApp, Receive, Scope, Send
from asgi_llm.upstream.router import Router

PROMPT_FIELDS = ("prompt_id", "prompt_variables", "prompt_label", "prompt_version")
_NO = object()
NOT_PARAMS = frozenset({"model", "messages", "metadata", *PROMPT_FIELDS})


class PromptTemplating:
    """Apply the selected prompt manager to chat requests; see the module docstring."""

    def __init__(self, app: ASGIApp, *, managers: Sequence[Any], router: Router, langfuse: Any = None,
                 store: Any = None) -> None:
        self.app = app
        self.store = store  # the built-in PromptStore: asked first, and directly (below)
        self._selected: dict[str, tuple[Any, str, dict[str, Any], dict[str, Any]]] = {}
        self.router = router
        self.managers = [m for m in managers if m is not store]
        named = [store, *self.managers] if store is not None else self.managers
        self.by_name = {name: m for m in named if (name := manager_name(m))}
        if langfuse is not None:
            self.by_name.setdefault("langfuse", langfuse)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is not None and ctx.body is not None and ctx.call_type == "completion":
            pending = self.apply(ctx)  # the store answers in place; another manager is awaited
            if pending is not None:
                model, messages, params = await pending
                self._use(ctx, model, messages, params)
        await self.app(scope, receive, send)

    def select(self, model: object) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
        """For the body's model (not a string: none): the manager it names (or None), the model to route
        to, its prompt defaults, and the Langfuse settings among them. Cached for configured names only,
        so clients cannot grow it."""
        if type(model) is not str:
            model = ""
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

    def apply(self, ctx: RequestContext) -> Awaitable[tuple[str, list[Any], dict[str, Any]]] | None:
        """Take the prompt fields out of the body and apply the store's prompt at once; hand back the
        awaitable answer of another manager (``_use`` applies it), or None when done."""
        body = ctx.body
        assert body is not None
        manager, target, defaults, langfuse = self.select(body.get("model"))
        if not defaults and manager is None and "prompt_id" not in body and "prompt_variables" not in body \
                and "prompt_label" not in body and "prompt_version" not in body:
            return None  # the common case: nothing here concerns prompts
        ctx.changed = True  # the prompt fields leave the body: it is sent without them
        pop = body.pop
        if defaults:  # the body wins over the model's defaults, even with a null
            prompt_id, variables, label, version = (
                defaults.get(field) if (value := pop(field, _NO)) is _NO else value for field in PROMPT_FIELDS)
        else:  # no defaults: a field the body does not carry is None
            prompt_id, variables = pop("prompt_id", None), pop("prompt_variables", None)
            label = pop("prompt_label") if "prompt_label" in body else None
            version = pop("prompt_version") if "prompt_version" in body else None
        store = self.store
        named_store = store is not None and manager is store
        if manager is None or named_store:
            if prompt_id is None:
                if manager is None:
                    return None
                raise GatewayError(400, "This model takes its prompt from the prompt store: send `prompt_id`.",
                                   param="prompt_id", code="missing_prompt_id")
            # the store is ours: no should_run/thread protocol, one freshness check, no coroutine
            chosen = store.lookup(prompt_id, version, label, ctx.start) if store is not None else None
            if chosen is not None:
                messages = chosen.render(variables or {}, body.get("messages") or ())
                if chosen.params:  # the prompt's own params, under the request's (as a manager answering
                    for key, value in chosen.params.items():  # {**prompt params, **request params} would)
                        if key in NOT_PARAMS or key not in body:
                            body[key] = value
                    ctx.stream = body.get("stream") is True
                body["model"], body["messages"] = chosen.model or target, messages
                return None
            if named_store:
                store.resolve(prompt_id, version, label)  # raises the 404 naming the id
        dynamic = {**langfuse, "prompt_label": label, "prompt_version": version}
        if manager is None:
            for candidate in self.managers:
                if accepts(candidate, prompt_id, dynamic):
                    manager = candidate
                    break
            else:
                if store is not None:
                    store.resolve(prompt_id, version, label)  # an id nobody holds: the store's 404
                return None
        params = {k: v for k, v in body.items() if k not in NOT_PARAMS}
        return run_manager(manager, target, body.get("messages") or [], params, prompt_id, variables, dynamic)

    def _use(self, ctx: RequestContext, model: str, messages: list[Any], params: dict[str, Any]) -> None:
        """Apply a manager's whole answer: its params replace the request's."""
        body = ctx.body
        assert body is not None
        body.update(params)
        body["model"], body["messages"] = model, messages
        ctx.stream = body.get("stream") is True
        ctx.changed = True
