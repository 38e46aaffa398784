"""examples/app.py, the stack composed in plain code, answers as documented."""

from __future__ import annotations

import asyncio

import httpx

from examples.app import COSTS, app, with_master_key

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hey"}]}


async def _post(asgi: object, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        return await client.post("/v1/chat/completions", json=CHAT, headers=headers)


def test_example_app_answers_logs_and_counts() -> None:
    async def run() -> tuple[httpx.Response, httpx.Response]:
        answer = await _post(app)
        await app.app.queue.aclose()  # deliver the success event before the loop ends
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            return answer, await client.get("/metrics")

    resp, metrics = asyncio.run(run())
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "This is a mock response from gpt-4o-mini. You said: hey"
    assert (resp.headers["x-asgi-llm-call-id"], 11) in COSTS  # "hey" + 10 words answered, as the mock counts
    assert 'asgi_llm_requests_total{model="gpt-4o-mini",route="/chat/completions",status="200"}' in metrics.text


def test_example_with_master_key() -> None:
    guarded = with_master_key("sk-example")
    assert asyncio.run(_post(guarded)).status_code == 401
    assert asyncio.run(_post(guarded, {"Authorization": "Bearer sk-example"})).status_code == 200


def test_example_prompt_store_and_seed_managers() -> None:
    from asgi_llm.gateway import create_app

    gateway = create_app("examples/prompts_config.yaml")
    body = {"model": "gpt-4o-mini", "messages": [], "prompt_id": "support-answer",
            "prompt_variables": {"product": "Acme", "name": "Ann"}}

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=gateway)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            stored = await client.post("/v1/chat/completions", json=body)
            seed = await client.post("/v1/chat/completions", json={
                "model": "custom-prompt-management/gpt-4", "messages": [{"role": "user", "content": "yo"}]})
            await gateway.aclose()
            return [stored, seed]

    stored, seed = asyncio.run(run())
    assert stored.json()["choices"][0]["message"]["content"].endswith("You said: My name is Ann.")
    assert seed.json()["model"] == "gpt-4" and seed.json()["choices"][0]["message"]["content"].endswith("yo")
