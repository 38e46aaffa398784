"""Capacity: the upstream pool never queues calls silently, a worker past its capacity refuses new calls
at once, and the open-files limit is raised at start-up."""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from asgi_llm import CustomLogger
from asgi_llm.cli import raise_open_files
from tests.conftest import make_config
from tests.servers import Recorder

CHAT = "/v1/chat/completions"
MASTER = "sk-master-capacity-01"


def test_the_default_pool_has_no_silent_cap(upstream: tuple[Recorder, str],
                                            gateway_factory: Callable[..., str]) -> None:
    recorder, api_base = upstream
    base = gateway_factory(make_config(api_base))

    async def run() -> int:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=300)) as client:
            async def one() -> int:
                async with client.stream("POST", base + CHAT, json={"model": "slow-stream", "stream": True,
                                                                    "messages": [{"role": "user", "content": "x"}]}
                                         ) as r:
                    async for _ in r.aiter_bytes():
                        if recorder.most_active >= 250:
                            break
                    return r.status_code
            return sum(s == 200 for s in await asyncio.gather(*(one() for _ in range(250))))

    assert asyncio.run(run()) == 250 and recorder.most_active == 250  # all upstream at once, none held back


def test_a_pool_cap_waits_at_most_pool_timeout_then_says_so(upstream: tuple[Recorder, str],
                                                             gateway_factory: Callable[..., str]) -> None:
    recorder, api_base = upstream
    config = make_config(api_base, master_key=MASTER, metrics=True,
                         upstream={"max_connections": 1, "pool_timeout": 0.3})
    base = gateway_factory(config)
    headers = {"authorization": f"Bearer {MASTER}"}
    holder = threading.Thread(target=lambda: httpx.post(base + CHAT, headers=headers, timeout=30, json={
        "model": "slow", "messages": [{"role": "user", "content": "hold"}]}))
    holder.start()
    deadline = time.monotonic() + 5
    while recorder.attempts["slow"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    refused = httpx.post(base + CHAT, headers=headers, timeout=10,
                         json={"model": "echo", "messages": [{"role": "user", "content": "waits"}]})
    assert refused.status_code == 503 and 0.25 < time.monotonic() - began < 2
    error = refused.json()["error"]
    assert error["code"] == "upstream_pool_exhausted" and "max_connections: 1" in error["message"]
    assert refused.headers["retry-after"] == "1"
    holder.join(15)
    assert httpx.post(base + CHAT, headers=headers, timeout=10, json={
        "model": "echo", "messages": [{"role": "user", "content": "free"}]}).status_code == 200
    metrics = httpx.get(base + "/metrics", headers=headers).text
    assert "asgi_llm_upstream_pool_waits_total 1.0" in metrics
    assert "asgi_llm_upstream_pool_timeouts_total 1.0" in metrics


def test_open_streams_past_the_bound_are_refused_and_readiness_says_so(
        upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    api_base = upstream[1]
    base = gateway_factory(make_config(api_base, max_open_streams=2))
    body = {"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.Client(timeout=30) as client:
        streams = [client.stream("POST", base + CHAT, json=body) for _ in range(2)]
        opened = [s.__enter__() for s in streams]
        readers = [r.iter_bytes() for r in opened]
        for reader in readers:
            next(reader)
        refused = httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "worker_overloaded"
        assert refused.headers["retry-after"] == "1"
        ready = httpx.get(base + "/health/readiness")
        assert ready.status_code == 503 and ready.json() == {"status": "shedding", "reason": "open_streams"}
        for s in streams:
            s.__exit__(None, None, None)
    deadline = time.monotonic() + 5
    while httpx.get(base + "/health/readiness").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
                      ).status_code == 200


class Blocker(CustomLogger):
    """A pre-call hook that blocks the event loop (what an overloaded worker looks like)."""

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any]:
        if data["messages"][-1]["content"] == "block":
            time.sleep(0.6)  # noqa: ASYNC251 - on purpose: the loop runs late
        return data


def test_a_lagging_loop_sheds_new_calls(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(make_config(upstream[1], max_event_loop_lag=0.3), callbacks=[Blocker()])
    assert httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "ok"}]}
                      ).status_code == 200
    assert httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "block"}]}
                      ).status_code == 200  # admitted before the lag: it completes
    shed = httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "next"}]})
    assert shed.status_code == 503 and "event loop lag" in shed.json()["error"]["message"]
    deadline = time.monotonic() + 5
    while httpx.get(base + "/health/readiness").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.post(base + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "ok"}]}
                      ).status_code == 200


def test_the_open_files_limit_is_raised() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 256) if hard == resource.RLIM_INFINITY else min(hard, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        before, now = raise_open_files()
        assert before == lower
        assert now == (lower if hard == resource.RLIM_INFINITY else hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
