"""Shared limits and cache across processes: two gateway processes (one with ``--workers 2``) and one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from asgi_llm.hooks.auth import hash_key
from tests.conftest import deployment
from tests.redis_server import RedisServer
from tests.servers import CLIServer, Recorder

KEY = "sk-team-client-0001"


def write_config(tmp_path: Path, redis: RedisServer, api_base: str, key: dict[str, Any],
                 **general: Any) -> str:
    config = {
        "model_list": [deployment("echo", api_base + "/v1"), deployment("slow-stream", api_base + "/v1")],
        "keys": [{"key_hash": hash_key(KEY), **key}],
        "litellm_settings": {"cache": True, "cache_params": {"type": "redis", "host": "127.0.0.1",
                                                             "port": redis.port}},
        "general_settings": general,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[Any]:
    """Start gateway processes for a config file: one with ``--workers 2``, one single."""
    with ExitStack() as stack:
        def start(config: str, workers: tuple[int, ...] = (2, 1)) -> list[CLIServer]:
            return [stack.enter_context(CLIServer(config, *(("--workers", str(n)) if n > 1 else ())))
                    for n in workers]

        yield start


async def spread(urls: list[str], n: int, body: dict[str, Any]) -> list[httpx.Response]:
    """``n`` concurrent requests, round robin over ``urls``."""
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        headers = {"authorization": f"Bearer {KEY}"}
        return await asyncio.gather(*(client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body,
                                                  headers=headers) for i in range(n)))


def test_rpm_limit_is_exact_across_instances_and_workers(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                         instances: Any, tmp_path: Path) -> None:
    recorder, api_base = upstream
    urls = [s.url for s in instances(write_config(tmp_path, redis_server, api_base, {"rpm_limit": 20}))]
    redis_server.fresh_window()  # the processes took a while to start
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "cache": {"no-cache": True}}
    answers = asyncio.run(spread(urls, 100, body))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 20 and statuses.count(429) == 80
    assert recorder.attempts["echo"] == 20  # the upstream saw exactly the admitted ones
    refused = next(r for r in answers if r.status_code == 429)
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and "rpm_limit" in error["message"] and KEY not in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "20"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_parallel_limit_holds_across_instances_and_leases_end_free(upstream: tuple[Recorder, str],
                                                                   redis_server: RedisServer, instances: Any,
                                                                   tmp_path: Path) -> None:
    recorder, api_base = upstream
    urls = [s.url for s in instances(write_config(tmp_path, redis_server, api_base, {"max_parallel_requests": 3}))]
    body = {"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "go"}]}

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(i: int) -> int:
                async with client.stream("POST", urls[i % 2] + "/v1/chat/completions", json=body,
                                         headers={"authorization": f"Bearer {KEY}"}) as r:
                    if r.status_code == 200:
                        async for _ in r.aiter_bytes():
                            if recorder.most_active >= 3:
                                break  # three are streaming: leave, the leases must come back
                    return r.status_code
            return await asyncio.gather(*(one(i) for i in range(20)))

    statuses = asyncio.run(run())
    assert recorder.most_active <= 3
    assert 1 <= statuses.count(200) <= 3 and statuses.count(429) == 20 - statuses.count(200)
    leases = f"asgi-llm:rl:key:{hash_key(KEY)}:p"  # the key's lease set (gone once empty)
    deadline = time.monotonic() + 10
    while redis_server.client.zcard(leases) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_server.client.zcard(leases) == 0


def test_a_killed_instance_leases_expire(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                         instances: Any, tmp_path: Path) -> None:
    api_base = upstream[1]
    config = write_config(tmp_path, redis_server, api_base, {"max_parallel_requests": 1}, rate_limit_lease_ttl=2)
    victim_server, survivor_server = instances(config, workers=(1, 1))
    victim, survivor = victim_server.url, survivor_server.url
    body = {"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(timeout=30) as client, client.stream("POST", victim + "/v1/chat/completions", json=body,
                                                           headers=headers) as held:
        assert held.status_code == 200
        chunks = held.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)
        # the lease outlives a renewal period (2/3 s) while the stream is alive
        time.sleep(1.5)
        assert client.post(survivor + "/v1/chat/completions", json=body, headers=headers).status_code == 429
        os.kill(victim_server.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = killed_at + 10
    status = 429
    while status == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
        small = {"model": "echo", "messages": [{"role": "user", "content": "after"}]}
        status = httpx.post(survivor + "/v1/chat/completions", json=small, headers=headers, timeout=10).status_code
    assert status == 200 and time.monotonic() - killed_at <= 4  # freed by expiry (ttl 2 s), not by anyone


def test_cache_hit_across_instances(upstream: tuple[Recorder, str], redis_server: RedisServer, instances: Any,
                                    tmp_path: Path) -> None:
    recorder, api_base = upstream
    first, second = (s.url for s in instances(write_config(tmp_path, redis_server, api_base, {}), workers=(1, 1)))
    body = {"model": "echo", "messages": [{"role": "user", "content": "shared answer"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    a = httpx.post(first + "/v1/chat/completions", json=body, headers=headers, timeout=10)
    b = httpx.post(second + "/v1/chat/completions", json=body, headers=headers, timeout=10)
    assert (a.headers["x-asgi-llm-cache"], b.headers["x-asgi-llm-cache"]) == ("miss", "hit")
    assert a.json()["choices"] == b.json()["choices"] and recorder.attempts["echo"] == 1
    digest = b.headers["x-litellm-cache-key"]
    assert redis_server.client.exists(f"asgi-llm:cache:{digest}")


def test_redis_killed_and_restarted_during_load(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                instances: Any, tmp_path: Path) -> None:
    api_base = upstream[1]
    config = write_config(tmp_path, redis_server, api_base, {"rpm_limit": 100_000})
    urls = [s.url for s in instances(config, workers=(1, 1))]

    async def load(stop: asyncio.Event) -> list[int]:
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=10) as client:
            i = 0
            while not stop.is_set():
                body = {"model": "echo", "messages": [{"role": "user", "content": f"q{i % 7}"}]}
                r = await client.post(urls[i % 2] + "/v1/chat/completions", json=body,
                                      headers={"authorization": f"Bearer {KEY}"})
                statuses.append(r.status_code)
                i += 1
        return statuses

    async def run() -> tuple[list[int], list[str]]:
        stop = asyncio.Event()
        workers = [asyncio.ensure_future(load(stop)) for _ in range(4)]
        await asyncio.sleep(0.5)
        redis_server.stop()
        await asyncio.sleep(1.0)
        redis_server.start()
        # back: the gateway reconnects by itself (retry_interval 1 s); cache hits resume
        cached = []
        deadline = time.monotonic() + 10
        async with httpx.AsyncClient(timeout=10) as client:
            while "hit" not in cached and time.monotonic() < deadline:
                body = {"model": "echo", "messages": [{"role": "user", "content": "after restart"}]}
                r = await client.post(urls[0] + "/v1/chat/completions", json=body,
                                      headers={"authorization": f"Bearer {KEY}"})
                cached.append(r.headers["x-asgi-llm-cache"])
                await asyncio.sleep(0.1)
        stop.set()
        return [s for w in workers for s in await w], cached

    statuses, cached = asyncio.run(run())
    assert statuses and set(statuses) == {200}  # fail open: nothing refused, nothing broke
    assert "hit" in cached


def test_token_limit_is_exact_across_instances(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                               instances: Any, tmp_path: Path) -> None:
    recorder, api_base = upstream
    urls = [s.url for s in instances(write_config(tmp_path, redis_server, api_base, {"tpm_limit": 200}))]
    redis_server.fresh_window()
    body = {"model": "echo", "messages": [{"role": "user", "content": "t"}], "max_tokens": 10,
            "cache": {"no-cache": True, "no-store": True}}
    answers = asyncio.run(spread(urls, 60, body))
    ok = [r for r in answers if r.status_code == 200]
    assert ok and len(ok) + sum(r.status_code == 429 for r in answers) == 60
    counter = f"asgi-llm:rl:key:{hash_key(KEY)}:t"
    # every admitted call was corrected to what the upstream billed (5 tokens), across processes
    assert int(redis_server.client.hget(counter, "n")) == 5 * len(ok) == 5 * recorder.attempts["echo"]
    assert 5 * len(ok) <= 200
