"""``CallHooks``: LiteLLM's call hooks around the model call.

Request side, for every LLM request with a JSON body, each callback's
``async_pre_call_hook(user_api_key_dict, cache, data, call_type)`` runs in config
order, each seeing the previous one's output:

- ``data`` is the request dict, with a ``metadata`` dict hooks may use to pass state
  on (it is never sent upstream); in-place changes apply, a returned dict replaces it;
- a returned ``str`` rejects the call with that text as a normal answer
  (``asgi_llm.send_rejection``): the upstream is never called;
- a raised ``HTTPException`` becomes its status, detail and headers; another raised or
  returned exception becomes its ``status_code`` (400-599) or 500 (rendered by ``Errors``).

Response side, on a non-streaming 2xx JSON answer, each callback's
``async_post_call_success_hook(data, user_api_key_dict, response)`` gets the answer as
an object with attribute and key access; changes to it, or a returned replacement,
are what the client gets. Only callbacks that override a hook are called, and the
answer is held back only when one overrides the success hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from asgi_llm.hooks.auth import UserAPIKeyAuth
from asgi_llm.hooks.cache import DualCache
from asgi_llm.hooks.custom_logger import CustomLogger, with_hook
from asgi_llm.hooks.response import unwrap, wrap
from asgi_llm.request.context import RequestContext, get_context
from asgi_llm.request.reject import send_rejection
from asgi_llm.types import ASGIApp, Message, Receive, Scope, Send

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class CallHooks:
    """Pre-call and post-call-success hooks; see the module docstring."""

    def __init__(self, app: ASGIApp, *, callbacks: Sequence[CustomLogger], cache: DualCache | None = None) -> None:
        self.app = app
        self.cache = cache if cache is not None else DualCache()
        self.pre_call = with_hook(list(callbacks), "async_pre_call_hook")
        self.success = with_hook(list(callbacks), "async_post_call_success_hook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope) if scope["type"] == "http" else None
        if ctx is None or ctx.body is None:
            await self.app(scope, receive, send)
            return
        auth = ctx.caller(scope["path"])
        if self.pre_call:
            rejection = await self.run_pre_call(ctx, auth)
            if rejection is not None:
                await send_rejection(ctx, rejection, send)
                return
        if self.success and not ctx.stream:
            await self.app(scope, receive, self.success_send(ctx, auth, send))
        else:
            await self.app(scope, receive, send)

    async def run_pre_call(self, ctx: RequestContext, auth: UserAPIKeyAuth) -> str | None:
        data = ctx.body
        assert data is not None
        if not isinstance(data.get("metadata"), dict):
            data["metadata"] = {}
        for callback in self.pre_call:
            result = await callback.async_pre_call_hook(user_api_key_dict=auth, cache=self.cache, data=data,
                                                        call_type=ctx.call_type)
            if isinstance(result, str):
                return result
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, dict):
                data = result
        ctx.body = data
        ctx.stream = data.get("stream") is True  # a hook may turn streaming on or off
        ctx.mark_changed()  # in-place changes cannot be seen from here: encode once at the exit
        return None

    def success_send(self, ctx: RequestContext, auth: UserAPIKeyAuth, send: Send) -> Send:
        """A ``send`` that holds a 2xx JSON answer until the success hooks have seen it."""
        held: list[Message] = []
        chunks: list[bytes] = []

        async def hooked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if 200 <= message["status"] < 300 and headers.get(b"content-type", b"").startswith(b"application/json"):
                    held.append(message)
                    return
            elif held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await self.finish(ctx, auth, held[0], b"".join(chunks), send)
                return
            await send(message)

        return hooked_send

    async def finish(self, ctx: RequestContext, auth: UserAPIKeyAuth, start: Message, body: bytes,
                     send: Send) -> None:
        payload: Any = _decode(body)
        response = wrap(payload)
        for callback in self.success:
            result = await callback.async_post_call_success_hook(data=ctx.body, user_api_key_dict=auth,
                                                                 response=response)
            if result is not None:
                response = wrap(unwrap(result))
        data = _encode(unwrap(response))
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": data})
