"""Rate limits, the response cache and DualCache on a real redis-server, through gateways on sockets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from asgi_llm import CustomLogger, DualCache, UserAPIKeyAuth
from asgi_llm.hooks.auth import hash_key
from asgi_llm.request.errors import GatewayError
from tests.conftest import deployment, make_config
from tests.redis_server import RedisServer
from tests.servers import Recorder

KEY, OTHER, THIRD = "sk-client-alpha-01", "sk-client-beta-002", "sk-client-gamma-03"
CHAT = "/v1/chat/completions"


def config(upstream: tuple[Recorder, str], redis: RedisServer | None, keys: list[dict[str, Any]] | None = None,
           cache: dict[str, Any] | None = None, **general: Any) -> dict[str, Any]:
    made = make_config(upstream[1], **general)
    made["keys"] = keys if keys is not None else [{"key_hash": hash_key(KEY)}]
    if cache is not None or redis is not None:
        params = {"type": "redis", "host": "127.0.0.1", "port": redis.port} if redis is not None else {}
        made["litellm_settings"] = {"cache": cache is not None, "cache_params": {**params, **(cache or {})}}
    return made


def post(base: str, body: dict[str, Any], key: str = KEY, **headers: str) -> httpx.Response:
    return httpx.post(base + CHAT, json=body, headers={"authorization": f"Bearer {key}", **headers}, timeout=10)


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}


def events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]


# --- rate limits -------------------------------------------------------------------------------------------------

def test_token_limit_reserves_then_corrects_to_real_usage(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                          gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, [{"key_hash": hash_key(KEY), "tpm_limit": 40}]))
    max_tokens = 20 - len(json.dumps(chat("x", max_tokens=10)).encode()) // 4  # an estimate of exactly 20
    body = chat("x", max_tokens=max_tokens)
    assert len(json.dumps(body).encode()) // 4 + max_tokens == 20
    statuses = [post(base, body).status_code for _ in range(6)]
    # each call is billed 5 tokens (the upstream's usage): admitted while 5k + 20 <= 40
    assert statuses == [200, 200, 200, 200, 200, 429]
    counter = next(iter(redis_server.client.keys("asgi-llm:rl:key:*:t")))
    assert int(redis_server.client.hget(counter, "n")) == 25
    refused = post(base, body)
    assert refused.headers["x-ratelimit-limit-tokens"] == "40" and "tpm_limit" in refused.json()["error"]["message"]


def test_a_failed_call_gives_its_tokens_back(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                             gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, [{"key_hash": hash_key(KEY), "tpm_limit": 1000}]))
    assert post(base, {**chat("x"), "model": "bad-request"}).status_code == 400
    counter = next(iter(redis_server.client.keys("asgi-llm:rl:key:*:t")))
    assert int(redis_server.client.hget(counter, "n")) == 0


def test_stream_tokens_come_from_the_stream_usage(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                  gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, [{"key_hash": hash_key(KEY), "tpm_limit": 1000}]))
    answer = post(base, chat("x", stream=True))
    assert answer.status_code == 200 and all(e["choices"] for e in events(answer.text))  # usage not shown
    counter = next(iter(redis_server.client.keys("asgi-llm:rl:key:*:t")))
    assert int(redis_server.client.hget(counter, "n")) == 7  # STREAM_USAGE's total


def test_rate_limit_error_through_the_openai_sdk(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                 gateway_factory: Callable[..., str], sdk: Any) -> None:
    base = gateway_factory(config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 1}]))
    client = sdk(base, key=KEY)
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "two"}])
    response = caught.value.response
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert float(response.headers["x-ratelimit-reset-requests"].rstrip("s")) <= 60


def test_team_limits_are_shared_by_its_keys(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                            gateway_factory: Callable[..., str]) -> None:
    keys = [{"key_hash": hash_key(k), "team_id": "red"} for k in (KEY, OTHER)]
    made = config(upstream, redis_server, [*keys, {"key_hash": hash_key(THIRD), "team_id": "blue"}])
    made["teams"] = [{"team_id": "red", "rpm_limit": 3}]
    base = gateway_factory(made)
    statuses = [post(base, chat("t"), key=k).status_code for k in (KEY, OTHER, KEY, OTHER)]
    assert statuses == [200, 200, 200, 429]
    refused = post(base, chat("t"), key=KEY).json()["error"]["message"]
    assert "team limit `rpm_limit`" in refused and "red" not in refused.split("team")[0]
    assert post(base, chat("t"), key=THIRD).status_code == 200  # another team


def test_per_model_limits_of_a_key(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                   gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server,
                                  [{"key_hash": hash_key(KEY), "model_rpm_limit": {"echo": 1}}]))
    assert post(base, chat("a")).status_code == 200
    assert "model_rpm_limit[echo]" in post(base, chat("b")).json()["error"]["message"]
    assert post(base, {**chat("c"), "model": "mock-model"}).status_code == 200


def test_deployments_at_their_limit_are_skipped(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                gateway_factory: Callable[..., str]) -> None:
    recorder, api_base = upstream
    made = config(upstream, redis_server)
    made["model_list"] = [deployment("pool", api_base + "/v1", "first", rpm=1),
                          deployment("pool", api_base + "/v1", "second", rpm=2)]
    base = gateway_factory(made)
    statuses = [post(base, {**chat("p"), "model": "pool"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert (recorder.attempts["first"], recorder.attempts["second"]) == (1, 2)
    assert "deployment limit `rpm`" in post(base, {**chat("p"), "model": "pool"}).json()["error"]["message"]


def test_gateway_parallel_limit_and_a_disconnect_frees_the_lease(upstream: tuple[Recorder, str],
                                                                 redis_server: RedisServer,
                                                                 gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, max_parallel_requests=1))
    body = {**chat("s", stream=True), "model": "slow-stream"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", base + CHAT, json=body, headers={"authorization": f"Bearer {KEY}"}) as held:
            chunks = held.iter_bytes()
            next(chunks)
            refused = post(base, chat("while busy"))
            assert refused.status_code == 429 and "gateway limit `max_parallel_requests`" in refused.text
            assert refused.headers["retry-after"] == "1"
        # the client left mid-stream: the lease comes back
        deadline = time.monotonic() + 5
        while redis_server.client.zcard("asgi-llm:rl:gateway:p") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert redis_server.client.zcard("asgi-llm:rl:gateway:p") == 0
        assert post(base, chat("after")).status_code == 200


def test_limits_without_redis_hold_in_process(upstream: tuple[Recorder, str],
                                              gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, None, [{"key_hash": hash_key(KEY), "rpm_limit": 2}]))
    assert [post(base, chat("l")).status_code for _ in range(3)] == [200, 200, 429]


# --- response cache ----------------------------------------------------------------------------------------------

def test_hit_miss_and_field_order(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                  gateway_factory: Callable[..., str]) -> None:
    recorder = upstream[0]
    base = gateway_factory(config(upstream, redis_server, cache={}))
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    first = httpx.post(base + CHAT, headers=headers,
                       content=b'{"model":"echo","temperature":0,"messages":[{"role":"user","content":"q"}]}')
    second = httpx.post(base + CHAT, headers=headers,
                        content=b'{"messages":[{"content":"q","role":"user"}],"temperature":0,"model":"echo"}')
    assert (first.headers["x-asgi-llm-cache"], second.headers["x-asgi-llm-cache"]) == ("miss", "hit")
    assert second.json() == first.json() and recorder.attempts["echo"] == 1
    assert post(base, chat("q", temperature=1)).headers["x-asgi-llm-cache"] == "miss"  # another answer


def test_stream_is_stored_and_replayed_chunk_by_chunk(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                      gateway_factory: Callable[..., str]) -> None:
    recorder = upstream[0]
    base = gateway_factory(config(upstream, redis_server, cache={}))
    fresh = post(base, chat("s", stream=True))
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", base + CHAT, json=chat("s", stream=True), headers={"authorization": f"Bearer {KEY}"}) as again:
        assert again.headers["x-asgi-llm-cache"] == "hit" and again.headers["content-type"] == "text/event-stream"
        reads = list(again.iter_raw())
    replayed = b"".join(reads).decode()
    assert events(replayed) == events(fresh.text) and len(events(replayed)) == 3
    assert len(reads) >= 2 and replayed.endswith("data: [DONE]\n\n")  # sent as a stream, not one blob
    whole = post(base, chat("s"))  # a non-streaming request answered from the stored stream
    assert whole.headers["x-asgi-llm-cache"] == "hit"
    assert whole.json()["choices"][0]["message"]["content"] == "Hello from upstream"
    assert recorder.attempts["echo"] == 1


def test_a_json_answer_serves_a_streaming_request(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                  gateway_factory: Callable[..., str], sdk: Any) -> None:
    base = gateway_factory(config(upstream, redis_server, cache={}))
    stored = post(base, chat("j")).json()
    client = sdk(base, key=KEY)
    chunks = list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "j"}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == stored["choices"][0]["message"]["content"] and chunks[-1].usage.total_tokens == 5
    assert upstream[0].attempts["echo"] == 1


def test_controls(upstream: tuple[Recorder, str], redis_server: RedisServer,
                  gateway_factory: Callable[..., str]) -> None:
    recorder = upstream[0]
    base = gateway_factory(config(upstream, redis_server, cache={}))
    assert post(base, chat("c", cache={"no-store": True})).headers["x-asgi-llm-cache"] == "miss"
    assert post(base, chat("c")).headers["x-asgi-llm-cache"] == "miss"  # nothing was stored
    assert post(base, chat("c")).headers["x-asgi-llm-cache"] == "hit"
    assert post(base, chat("c", cache={"no-cache": True})).headers["x-asgi-llm-cache"] == "bypass"
    assert post(base, chat("c"), **{"cache-control": "no-cache"}).headers["x-asgi-llm-cache"] == "bypass"
    assert recorder.attempts["echo"] == 4
    # s-maxage: an entry older than the given age is not used
    assert post(base, chat("c"), **{"cache-control": "s-maxage=0"}).headers["x-asgi-llm-cache"] == "miss"
    # a namespace of its own: nothing there yet; its entry is stored under it
    assert post(base, chat("c", cache={"namespace": "mine"})).headers["x-asgi-llm-cache"] == "miss"
    assert redis_server.client.keys("mine:*")
    # a ttl of its own: the entry goes away by itself
    assert post(base, chat("ttl", cache={"ttl": 1})).headers["x-asgi-llm-cache"] == "miss"
    look = chat("ttl", cache={"no-store": True})
    assert post(base, look).headers["x-asgi-llm-cache"] == "hit"
    deadline, result = time.monotonic() + 5, "hit"
    while result == "hit" and time.monotonic() < deadline:
        time.sleep(0.05)
        result = post(base, look).headers["x-asgi-llm-cache"]
    assert result == "miss"


@pytest.mark.parametrize(("scope", "shared"), [("team", False), ("global", True)])
def test_scopes(scope: str, shared: bool, upstream: tuple[Recorder, str], redis_server: RedisServer,
                gateway_factory: Callable[..., str]) -> None:
    keys = [{"key_hash": hash_key(KEY), "team_id": "red"}, {"key_hash": hash_key(OTHER), "team_id": "red"},
            {"key_hash": hash_key(THIRD), "team_id": "blue"}]
    base = gateway_factory(config(upstream, redis_server, keys, cache={"scope": scope}))
    assert post(base, chat("s"), key=KEY).headers["x-asgi-llm-cache"] == "miss"
    assert post(base, chat("s"), key=OTHER).headers["x-asgi-llm-cache"] == "hit"  # same team
    assert post(base, chat("s"), key=THIRD).headers["x-asgi-llm-cache"] == ("hit" if shared else "miss")


def test_key_scope(upstream: tuple[Recorder, str], redis_server: RedisServer,
                   gateway_factory: Callable[..., str]) -> None:
    keys = [{"key_hash": hash_key(KEY), "team_id": "red"}, {"key_hash": hash_key(OTHER), "team_id": "red"}]
    base = gateway_factory(config(upstream, redis_server, keys, cache={"scope": "key"}))
    post(base, chat("k"), key=KEY)
    assert post(base, chat("k"), key=OTHER).headers["x-asgi-llm-cache"] == "miss"
    assert post(base, chat("k"), key=KEY).headers["x-asgi-llm-cache"] == "hit"


def test_errors_and_cut_streams_are_never_stored(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                 gateway_factory: Callable[..., str]) -> None:
    recorder = upstream[0]
    base = gateway_factory(config(upstream, redis_server, cache={}))
    for _ in range(2):
        assert post(base, {**chat("e"), "model": "bad-request"}).status_code == 400
        with httpx.Client(timeout=10) as client, client.stream(
                "POST", base + CHAT, json={**chat("e", stream=True), "model": "cut-stream"},
                headers={"authorization": f"Bearer {KEY}"}) as cut:
            assert cut.headers["x-asgi-llm-cache"] == "miss"
            cut.read()
    assert recorder.attempts["bad-request"] == 2 and recorder.attempts["cut-stream"] == 2
    assert not redis_server.client.keys("asgi-llm:cache:*")


def test_embeddings_and_call_types(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                   gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, cache={"supported_call_types": ["aembedding"]}))
    headers = {"authorization": f"Bearer {KEY}"}
    body = {"model": "echo", "input": "vector please"}
    first = httpx.post(base + "/v1/embeddings", json=body, headers=headers)
    second = httpx.post(base + "/v1/embeddings", json=body, headers=headers)
    assert (first.headers["x-asgi-llm-cache"], second.headers["x-asgi-llm-cache"]) == ("miss", "hit")
    assert second.json()["data"] == first.json()["data"]
    assert post(base, chat("not cached")).headers["x-asgi-llm-cache"] == "bypass"


def test_default_off_caches_only_when_asked(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                            gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, cache={"mode": "default_off"}))
    assert post(base, chat("o")).headers["x-asgi-llm-cache"] == "bypass"
    assert post(base, chat("o", cache={"use-cache": True})).headers["x-asgi-llm-cache"] == "miss"
    assert post(base, chat("o", cache={"use-cache": True})).headers["x-asgi-llm-cache"] == "hit"


class Guard(CustomLogger):
    """Rewrites answers after the call, rejects a word by moderation, and records what logging got."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        response.choices[0].message.content = "[checked] " + response.choices[0].message.content
        return response

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> None:
        if "forbidden" in json.dumps(data.get("messages")) and data.get("metadata", {}).get("strict"):
            raise GatewayError(400, "forbidden word", code="moderation")

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.logged.append(kwargs)


def test_policy_runs_on_hits(upstream: tuple[Recorder, str], redis_server: RedisServer,
                             gateway_factory: Callable[..., str]) -> None:
    guard = Guard()
    base = gateway_factory(config(upstream, redis_server, cache={}), callbacks=[guard])
    fresh = post(base, chat("forbidden thing"))
    hit = post(base, chat("forbidden thing"))
    assert hit.headers["x-asgi-llm-cache"] == "hit"
    assert fresh.json()["choices"][0]["message"]["content"].startswith("[checked] ")
    assert hit.json()["choices"][0]["message"]["content"] == fresh.json()["choices"][0]["message"]["content"]
    # moderation still judges a request whose answer is cached (metadata does not change the cache key)
    refused = post(base, chat("forbidden thing", metadata={"strict": True}))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "moderation"
    deadline = time.monotonic() + 5
    while len(guard.logged) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [k["cache_hit"] for k in guard.logged[:2]] == [False, True]
    assert guard.logged[1]["response_cost"] == 0 and guard.logged[1]["standard_logging_object"]["cache_hit"]


def test_local_cache_is_bounded(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, None, cache={"type": "local", "max_entries": 2}))
    for word in ("a", "b", "c"):
        assert post(base, chat(word)).headers["x-asgi-llm-cache"] == "miss"
    assert post(base, chat("c")).headers["x-asgi-llm-cache"] == "hit"
    assert post(base, chat("a")).headers["x-asgi-llm-cache"] == "miss"  # evicted: the oldest


# --- faults ------------------------------------------------------------------------------------------------------

def test_redis_down_fails_open_and_recovers(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                            gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 1000}], cache={}, metrics=True,
                  master_key="sk-master-000")
    base = gateway_factory(made)
    assert post(base, chat("f")).headers["x-asgi-llm-cache"] == "miss"
    redis_server.stop()
    down = post(base, chat("f"))
    assert down.status_code == 200 and down.headers["x-asgi-llm-cache"] == "bypass"
    metrics = httpx.get(base + "/metrics", headers={"authorization": "Bearer sk-master-000"}).text
    assert 'asgi_llm_redis_errors_total{op="admit"}' in metrics
    assert 'asgi_llm_cache_requests_total{result="bypass"}' in metrics
    redis_server.start()
    deadline = time.monotonic() + 5
    result = "bypass"
    while result != "miss" and time.monotonic() < deadline:  # reconnects by itself within retry_interval
        time.sleep(0.1)
        result = post(base, chat("f")).headers["x-asgi-llm-cache"]
    assert result == "miss" and post(base, chat("f")).headers["x-asgi-llm-cache"] == "hit"


def test_redis_down_fails_closed_when_configured(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                 gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 10}], rate_limit_fail="closed")
    base = gateway_factory(made)
    assert post(base, chat("c")).status_code == 200
    redis_server.stop()
    refused = post(base, chat("c"))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "rate_limit_store_unavailable"


def test_a_stalled_redis_never_hangs_a_request(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                               gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 10}], cache={})
    base = gateway_factory(made)
    assert post(base, chat("p")).status_code == 200
    redis_server.pause()
    try:
        started = time.monotonic()
        stalled = post(base, chat("p"))
        assert stalled.status_code == 200 and time.monotonic() - started < 2.5  # socket_timeout 0.5 s
        started = time.monotonic()
        assert post(base, chat("p")).status_code == 200 and time.monotonic() - started < 0.5  # marked down: no wait
    finally:
        redis_server.resume()


# --- DualCache ---------------------------------------------------------------------------------------------------

def test_dual_cache_counts_across_gateways(redis_server: RedisServer) -> None:
    from asgi_llm.config.redis import RedisTarget
    from asgi_llm.shared.redis_link import RedisLink

    async def run() -> tuple[list[float], Any, Any, list[Any]]:
        caches = [DualCache(redis=RedisLink(RedisTarget(host="127.0.0.1", port=redis_server.port)))
                  for _ in range(2)]
        totals = await asyncio.gather(*(caches[i % 2].async_increment_cache("calls", 1, ttl=60) for i in range(100)))
        await caches[0].async_set_cache("shared", {"a": 1}, ttl=60)
        seen = await caches[1].async_get_cache("shared")
        await caches[0].async_delete_cache("shared")
        caches[1].flush_cache()
        gone = await caches[1].async_get_cache("shared")
        batch = await caches[1].async_batch_get_cache(["calls", "missing"])
        for cache in caches:
            assert cache.redis is not None
            await cache.redis.aclose()
        return totals, seen, gone, batch

    totals, seen, gone, batch = asyncio.run(run())
    assert sorted(totals) == list(range(1, 101))  # each increment saw a distinct shared total
    assert seen == {"a": 1} and gone is None and batch[0] == 100 and batch[1] is None
    assert 0 < redis_server.client.pttl("asgi-llm:dualcache:calls") <= 60_000


def test_refusals_show_every_limit_and_a_full_window_is_refused_locally(
        upstream: tuple[Recorder, str], redis_server: RedisServer, gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 1, "tpm_limit": 5000}],
                  metrics=True, master_key="sk-master-000")
    base = gateway_factory(made)
    assert post(base, chat("r")).status_code == 200
    first = post(base, chat("r"))
    assert first.status_code == 429 and first.headers["x-ratelimit-limit-tokens"] == "5000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) > 4000
    commands = redis_server.client.info("stats")["total_commands_processed"]
    again = post(base, chat("r"))
    # refused from this worker's memory: the window is full until it ends, no round trip needed
    assert again.status_code == 429 and "rpm_limit" in again.json()["error"]["message"]
    assert redis_server.client.info("stats")["total_commands_processed"] == commands + 1  # the INFO call itself
    metrics = httpx.get(base + "/metrics", headers={"authorization": "Bearer sk-master-000"}).text
    assert 'asgi_llm_rate_limit_rejections_total{scope="key"} 2.0' in metrics
    assert 'asgi_llm_redis_roundtrip_seconds_count{op="admit"}' in metrics


def test_the_openai_sdk_retries_on_its_own(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                           gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "max_parallel_requests": 1}], metrics=True,
                  master_key="sk-master-000")
    base = gateway_factory(made)
    body = {**chat("s", stream=True), "model": "slow-stream"}

    def refused() -> str:
        text = httpx.get(base + "/metrics", headers={"authorization": "Bearer sk-master-000"}).text
        return next((line for line in text.splitlines() if line.startswith("asgi_llm_rate_limit_rejections_total")),
                    "")

    patient = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=3, timeout=10)
    answers: list[Any] = []
    with httpx.Client(timeout=10) as client, client.stream("POST", base + CHAT, json=body,
                                                           headers={"authorization": f"Bearer {KEY}"}) as held:
        chunks = held.iter_bytes()
        next(chunks)
        with openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as hasty, \
                pytest.raises(openai.RateLimitError):
            hasty.chat.completions.create(model="echo", messages=[{"role": "user", "content": "now"}])
        began = time.monotonic()
        asking = threading.Thread(target=lambda: answers.append(patient.chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": "later"}])))
        asking.start()
        deadline = time.monotonic() + 5
        while not refused().endswith(" 2.0") and time.monotonic() < deadline:  # the SDK's first try was refused
            time.sleep(0.05)
    # the stream held the only lease while the SDK first asked; its retry, after `retry-after`, got in
    asking.join(10)
    patient.close()
    assert answers and answers[0].retries_taken >= 1 and time.monotonic() - began >= 1.0


class CountingHook(CustomLogger):
    """Counts calls in the hooks' DualCache, as LiteLLM's parallel request limiter does."""

    def __init__(self) -> None:
        self.totals: list[float] = []

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any]:
        self.totals.append(await cache.async_increment_cache("calls", 1, ttl=60))
        return data


def test_a_hook_counts_across_gateways_through_dual_cache(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                          gateway_factory: Callable[..., str]) -> None:
    made = make_config(upstream[1])
    made["router_settings"] = {"redis_host": "127.0.0.1", "redis_port": redis_server.port}  # Redis for hooks only
    hooks = [CountingHook(), CountingHook()]
    bases = [gateway_factory(made, callbacks=[hook]) for hook in hooks]

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(*(client.post(bases[i % 2] + CHAT, json=chat(f"n{i}")) for i in range(40)))
        return [a.status_code for a in answers]

    assert asyncio.run(run()) == [200] * 40
    assert sorted(hooks[0].totals + hooks[1].totals) == list(range(1, 41)) and all(hooks[0].totals + hooks[1].totals)


def test_limited_answers_carry_the_headers_and_hits_spend_no_tokens(
        upstream: tuple[Recorder, str], redis_server: RedisServer, gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 10, "tpm_limit": 60}], cache={})
    base = gateway_factory(made)
    big = chat("h", max_tokens=40)  # an estimate of ~55 tokens, corrected to the 5 used
    first = post(base, big)
    assert first.headers["x-asgi-llm-cache"] == "miss"
    assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == (
        "10", "9")
    assert first.headers["x-ratelimit-limit-tokens"] == "60" and first.headers["x-ratelimit-reset-tokens"].endswith("s")
    counter = next(iter(redis_server.client.keys("asgi-llm:rl:key:*:t")))
    for _ in range(3):  # hits: no tokens reserved or taken
        hit = post(base, big)
        assert hit.status_code == 200 and hit.headers["x-asgi-llm-cache"] == "hit"
    assert int(redis_server.client.hget(counter, "n")) == 5
    assert hit.headers["x-ratelimit-remaining-requests"] == "6"  # hits count as requests
    assert upstream[0].attempts["echo"] == 1


def test_a_client_that_leaves_gets_its_tokens_back(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                   gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, [{"key_hash": hash_key(KEY), "tpm_limit": 100_000}]))
    body = {**chat("leave", stream=True), "model": "slow-stream"}
    with httpx.Client(timeout=10) as client, client.stream("POST", base + CHAT, json=body,
                                                           headers={"authorization": f"Bearer {KEY}"}) as held:
        chunks = held.iter_bytes()
        next(chunks)
        counter = next(iter(redis_server.client.keys("asgi-llm:rl:key:*:t")))
        assert int(redis_server.client.hget(counter, "n")) > 0  # reserved while it runs
    deadline = time.monotonic() + 5
    while int(redis_server.client.hget(counter, "n")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert int(redis_server.client.hget(counter, "n")) == 0


def test_no_call_types_keeps_redis_for_limits_and_hooks_only(upstream: tuple[Recorder, str],
                                                             redis_server: RedisServer,
                                                             gateway_factory: Callable[..., str]) -> None:
    made = config(upstream, redis_server, [{"key_hash": hash_key(KEY), "rpm_limit": 2}],
                  cache={"supported_call_types": []})
    base = gateway_factory(made)
    answers = [post(base, chat("same")) for _ in range(3)]
    assert [a.headers.get("x-asgi-llm-cache") for a in answers[:2]] == ["bypass", "bypass"]
    assert [a.status_code for a in answers] == [200, 200, 429] and upstream[0].attempts["echo"] == 2
    assert not redis_server.client.keys("asgi-llm:cache:*")


def test_answers_over_max_entry_bytes_are_not_kept(upstream: tuple[Recorder, str], redis_server: RedisServer,
                                                   gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, redis_server, cache={"max_entry_bytes": 64}))
    for body in (chat("big"), chat("big stream", stream=True)):
        assert [post(base, body).headers["x-asgi-llm-cache"] for _ in range(2)] == ["miss", "miss"]
    assert not redis_server.client.keys("asgi-llm:cache:*")
