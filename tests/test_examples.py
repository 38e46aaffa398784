"""examples/app.py, the stack composed in plain code, answers as documented."""

from __future__ import annotations

import asyncio

import httpx

from examples.app import app, with_master_key

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hey"}]}


async def _post(asgi: object, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        return await client.post("/v1/chat/completions", json=CHAT, headers=headers)


def test_example_app_answers() -> None:
    resp = asyncio.run(_post(app))
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "This is a mock response from gpt-4o-mini. You said: hey"


def test_example_with_master_key() -> None:
    guarded = with_master_key("sk-example")
    assert asyncio.run(_post(guarded)).status_code == 401
    assert asyncio.run(_post(guarded, {"Authorization": "Bearer sk-example"})).status_code == 200
