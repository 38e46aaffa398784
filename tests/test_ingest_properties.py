"""Property tests for body ingestion: any JSON object, split anywhere, is read whole and
kept as sent (unknown fields included); the replay gives the same bytes back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_llm import get_context
from asgi_llm.request.context import replay_receive
from asgi_llm.request.ingest import Ingest
from asgi_llm.request.routes import LLM_ROUTES
from asgi_llm.types import Message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
bodies = st.fixed_dictionaries(
    {"model": st.text(min_size=1, max_size=20),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                                 "content": st.text()}), min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "extra": json_values, "temperature": st.floats(0, 2)},
)


def _run(raw: bytes, cuts: list[int]) -> tuple[dict[str, Any], bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    seen: dict[str, Any] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        ctx = get_context(scope)
        assert ctx is not None
        seen["ctx"] = ctx
        seen["replayed"] = (await receive())["body"]

    async def main() -> None:
        queue = list(pieces)

        async def receive() -> Message:
            body = queue.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(queue)}

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": [(b"content-type", b"application/json")]}
        await Ingest(inner)(scope, receive, None)  # type: ignore[arg-type]

    asyncio.run(main())
    return seen["ctx"].body, seen["replayed"]


@settings(max_examples=150, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_any_split_of_any_body_is_read_whole_and_kept(body: dict[str, Any], cuts: list[int]) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    parsed, replayed = _run(raw, cuts)
    assert parsed == body
    assert replayed == raw  # unchanged body: the original bytes, not a re-encoding


def test_changed_body_is_replayed_encoded() -> None:
    from asgi_llm.request.context import RequestContext

    ctx = RequestContext(LLM_ROUTES["/chat/completions"], b'{"model":"a"}', {"model": "a"}, False)
    ctx.body["model"] = "b"  # type: ignore[index]
    ctx.mark_changed()

    async def never() -> Message:
        raise AssertionError("the body comes from the context")

    message = asyncio.run(replay_receive(ctx, never)())
    assert json.loads(message["body"]) == {"model": "b"}
