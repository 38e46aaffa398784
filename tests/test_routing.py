"""The router over sockets: retries elsewhere, fallbacks, cooldowns, strategies, health, with upstreams that
fail on command (tests.servers.Switchable) and a port nothing listens on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from asgi_llm import CustomLogger
from asgi_llm.hooks.auth import hash_key
from tests.conftest import UPSTREAM_KEY
from tests.redis_server import RedisServer
from tests.servers import ServerThread, Switchable, free_socket

CHAT = "/v1/chat/completions"
MASTER = "sk-master-routing-0"
CONTEXT_ERROR = {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
                 "in 9000 tokens.", "type": "invalid_request_error", "param": "messages",
                 "code": "context_length_exceeded"}
POLICY_ERROR = {"message": "Your request was rejected as a result of our safety system.",
                "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}


@pytest.fixture(scope="session")
def servers_session() -> Iterator[dict[str, tuple[Switchable, str]]]:
    with ExitStack() as stack:
        found = {}
        for name in "abcd":
            server = Switchable(name)
            found[name] = (server, stack.enter_context(ServerThread(server)).url)
        yield found


@pytest.fixture
def up(servers_session: dict[str, tuple[Switchable, str]]) -> dict[str, Switchable]:
    """Four upstreams a-d, answering ``from <name>``; reset for each test."""
    for server, _ in servers_session.values():
        server.__init__(server.name)  # type: ignore[misc]
    return {name: server for name, (server, _) in servers_session.items()}


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port nothing listens on: connections are refused."""
    sock = free_socket()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def dep(group: str, base: str, **params: Any) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {"model": f"openai/{group}", "api_base": base + "/v1",
                                                    "api_key": UPSTREAM_KEY, **params}}


def url_of(servers: dict[str, tuple[Switchable, str]], name: str) -> str:
    return servers[name][1]


def post(base: str, body: dict[str, Any], key: str = MASTER) -> httpx.Response:
    return httpx.post(base + CHAT, json=body, headers={"authorization": f"Bearer {key}"}, timeout=15)


def ask(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def said(answer: httpx.Response) -> str:
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content


@pytest.fixture
def routed(servers_session: dict[str, tuple[Switchable, str]],
           gateway_factory: Callable[..., str]) -> Callable[..., str]:
    """A gateway for ``model_list`` entries given as (group, server name or URL, params) and router settings."""
    def start(entries: list[tuple[str, str, dict[str, Any]]], router: dict[str, Any] | None = None,
              general: dict[str, Any] | None = None, **kwargs: Any) -> str:
        model_list = [dep(g, servers_session[s][1] if s in servers_session else s, **p) for g, s, p in entries]
        config = {"model_list": model_list, "router_settings": router or {},
                  "general_settings": {"master_key": MASTER, **(general or {})}, **kwargs.pop("extra", {})}
        return gateway_factory(config, **kwargs)
    return start


def test_a_retry_goes_to_the_other_deployment(up: dict[str, Switchable], routed: Callable[..., str],
                                              dead_url: str) -> None:
    up["a"].mode = "status"
    base = routed([("pool", "a", {}), ("pool", "b", {})], {"num_retries": 1})
    answers = [said(post(base, ask("pool"))) for _ in range(4)]
    assert answers == ["from b"] * 4 and up["b"].calls == 4
    assert up["a"].calls <= 3  # each time it was picked first it failed once; then it cooled down
    refused = routed([("pool", dead_url, {}), ("pool", "c", {})], {"num_retries": 1})
    assert [said(post(refused, ask("pool"))) for _ in range(3)] == ["from c"] * 3


def test_without_retries_a_failure_is_the_clients(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].mode = up["b"].mode = "status"
    up["a"].status = up["b"].status = 503
    base = routed([("pool", "a", {}), ("pool", "b", {})], {"num_retries": 1, "allowed_fails": 100})
    answer = post(base, ask("pool"))
    assert answer.status_code == 503 and answer.json()["error"]["message"] == "server broke"
    assert up["a"].calls + up["b"].calls == 2  # one attempt each: elsewhere first, no second round


def test_fallbacks_in_order(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].mode = up["b"].mode = "status"
    base = routed([("main", "a", {}), ("second", "b", {}), ("third", "c", {})],
                  {"fallbacks": [{"main": ["second", "third"]}]})
    answer = post(base, ask("main"))
    assert said(answer) == "from c" and answer.headers["x-asgi-llm-model-group"] == "third"
    assert (up["a"].calls, up["b"].calls, up["c"].calls) == (1, 1, 1)
    assert "x-asgi-llm-model-group" not in post(base, ask("third")).headers


def test_default_fallbacks_and_the_last_error(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].mode = up["b"].mode = "status"
    up["b"].status, up["b"].error = 429, {"message": "slow down", "type": "rate_limit_error", "code": None}
    base = routed([("main", "a", {}), ("spare", "b", {})], {"default_fallbacks": ["spare"]})
    answer = post(base, ask("main"))
    assert answer.status_code == 429 and answer.json()["error"]["message"] == "slow down"


@pytest.mark.parametrize(("error", "setting"), [(CONTEXT_ERROR, "context_window_fallbacks"),
                                               (POLICY_ERROR, "content_policy_fallbacks")])
def test_context_window_and_content_policy_fallbacks(error: dict[str, Any], setting: str, up: dict[str, Switchable],
                                                     routed: Callable[..., str]) -> None:
    up["a"].mode, up["a"].status, up["a"].error = "status", 400, error
    base = routed([("main", "a", {}), ("other", "b", {}), ("special", "c", {})],
                  {"fallbacks": [{"main": ["other"]}], setting: [{"main": ["special"]}]})
    assert said(post(base, ask("main"))) == "from c" and up["b"].calls == 0
    plain = routed([("main", "a", {}), ("other", "b", {})], {"fallbacks": [{"main": ["other"]}]})
    refused = post(plain, ask("main"))  # a client error with no fallback of its kind is the client's
    assert refused.status_code == 400 and refused.json()["error"]["code"] == error["code"]


def test_streams_fall_back_only_before_their_first_byte(up: dict[str, Switchable], routed: Callable[..., str],
                                                        sdk: Any) -> None:
    up["a"].mode = "status"
    base = routed([("main", "a", {}), ("other", "b", {})], {"fallbacks": [{"main": ["other"]}]})
    client = sdk(base, key=MASTER)
    chunks = list(client.chat.completions.create(**ask("main"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from b"
    up["a"].mode = "cut"  # the answer starts, then the upstream dies: a started stream's error, no fallback
    calls = up["b"].calls
    with httpx.Client(timeout=10) as http:
        text = http.post(base + CHAT, json=ask("main", stream=True), headers={"authorization": f"Bearer {MASTER}"}).text
    assert "from a" in text and '"error"' in text and text.endswith("data: [DONE]\n\n") and up["b"].calls == calls


def test_a_callers_fallbacks_only_reach_its_models(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].mode = "status"
    key = "sk-limited-routing-1"
    base = routed([("main", "a", {}), ("second", "b", {}), ("third", "c", {})],
                  extra={"keys": [{"key_hash": hash_key(key), "models": ["main", "second"]}]})
    body = ask("main", fallbacks=["third", "http://evil.example/v1", "second"])
    assert said(post(base, body, key=key)) == "from b" and up["c"].calls == 0
    assert said(post(base, body)) == "from c"  # the master key may use every group: its first choice
    assert post(base, {**body, "fallbacks": ["third"]}, key=key).status_code == 500  # nothing it may use


def test_cooldowns_start_skip_and_end(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].mode = "status"
    base = routed([("pool", "a", {}), ("pool", "b", {})], {"num_retries": 1, "allowed_fails": 1,
                                                              "cooldown_time": 1})
    for _ in range(6):
        assert said(post(base, ask("pool"))) == "from b"
    assert up["a"].calls == 2  # its second failure in the minute passed allowed_fails: skipped since
    ready = httpx.get(base + "/health/readiness").json()
    assert [c["deployment"] for c in ready["cooling_down"]] == ["openai/pool"] and ready["status"] == "healthy"
    up["a"].mode = "ok"
    deadline = time.monotonic() + 5
    while httpx.get(base + "/health/readiness").json()["cooling_down"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {said(post(base, ask("pool"))) for _ in range(4)} == {"from a", "from b"}  # back in turn


def test_auth_errors_cool_at_once_and_a_group_all_cooling_is_503(up: dict[str, Switchable],
                                                                 routed: Callable[..., str]) -> None:
    up["a"].mode, up["a"].status = "status", 401
    base = routed([("pool", "a", {}), ("pool", "b", {}), ("spare", "c", {})], {"num_retries": 1})
    assert said(post(base, ask("pool"))) == "from b" and said(post(base, ask("pool"))) == "from b"
    assert up["a"].calls == 1  # one 401 and it is out
    up["b"].mode, up["b"].status = "status", 403
    assert post(base, ask("pool")).json()["error"]["code"] == "upstream_auth_failed"  # this call's own failure
    answer = post(base, ask("pool"))  # the next one finds the whole group cooling down
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_group_cooling_down"
    assert "'pool'" in answer.json()["error"]["message"] and int(answer.headers["retry-after"]) >= 1
    with_spare = routed([("pool", "a", {}), ("pool", "b", {}), ("spare", "c", {})],
                        {"num_retries": 1, "fallbacks": [{"pool": ["spare"]}]})
    post(with_spare, ask("pool"))
    assert said(post(with_spare, ask("pool"))) == "from c"  # every deployment cooling: the fallback


def test_least_busy_avoids_the_busy_one(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].delay = up["b"].delay = 0.0
    base = routed([("pool", "a", {}), ("pool", "b", {})], {"routing_strategy": "least-busy"})
    up["a"].delay = up["b"].delay = 2.0
    slow = threading.Thread(target=post, args=(base, ask("pool")))
    slow.start()
    deadline = time.monotonic() + 5
    while up["a"].active + up["b"].active == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = "a" if up["a"].active else "b"
    idle = "b" if busy == "a" else "a"
    up[idle].delay = 0.0
    assert {said(post(base, ask("pool"))) for _ in range(5)} == {f"from {idle}"}
    slow.join(10)


def test_latency_based_prefers_the_fast_one(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    up["a"].delay = 0.3
    base = routed([("pool", "a", {}), ("pool", "b", {})], {"routing_strategy": "latency-based-routing"})
    answers = [said(post(base, ask("pool"))) for _ in range(8)]
    assert answers.count("from a") == 1  # measured once, then never the slow one


def test_weighted_shuffle(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    base = routed([("pool", "a", {"weight": 9}), ("pool", "b", {"weight": 1})])

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=15) as client:
            answers = await asyncio.gather(*(client.post(base + CHAT, json=ask("pool"),
                                                         headers={"authorization": f"Bearer {MASTER}"})
                                             for _ in range(100)))
        return [a.json()["choices"][0]["message"]["content"] for a in answers]

    answers = asyncio.run(run())
    assert answers.count("from a") > 70 and answers.count("from b") > 0


def test_usage_based_prefers_room_under_tpm(up: dict[str, Switchable], routed: Callable[..., str]) -> None:
    base = routed([("pool", "a", {"tpm": 100}), ("pool", "b", {"tpm": 10_000})],
                  {"routing_strategy": "usage-based-routing"})
    answers = [said(post(base, ask("pool"))) for _ in range(10)]
    assert answers.count("from b") >= 8


def test_the_chain_has_a_deadline(up: dict[str, Switchable], routed: Callable[..., str], sdk: Any) -> None:
    up["a"].mode = "hang"
    base = routed([("main", "a", {}), ("other", "b", {})], {"timeout": 1, "fallbacks": [{"main": ["other"]}]})
    client = sdk(base, key=MASTER)
    began = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**ask("main"))
    assert caught.value.status_code == 504 and time.monotonic() - began < 5
    assert caught.value.body["code"] == "router_timeout"  # type: ignore[index]


def test_health_lists_deployments_behind_the_master_key(up: dict[str, Switchable], routed: Callable[..., str],
                                                        dead_url: str) -> None:
    key = "sk-virtual-health-1"
    base = routed([("pool", "a", {}), ("pool", dead_url, {})],
                  extra={"keys": [{"key_hash": hash_key(key)}]})
    report = httpx.get(base + "/health", headers={"authorization": f"Bearer {MASTER}"}, timeout=15).json()
    assert report["healthy_count"] == 1 and report["unhealthy_count"] == 1
    assert report["unhealthy_endpoints"][0]["error"].startswith("unreachable") and UPSTREAM_KEY not in str(report)
    assert httpx.get(base + "/health", headers={"authorization": f"Bearer {key}"}).status_code == 403
    assert httpx.get(base + "/health").status_code == 401
    # the failed probe cooled the dead deployment down: calls go to the live one
    assert [said(post(base, ask("pool"))) for _ in range(3)] == ["from a"] * 3


def test_background_checks_feed_the_cooldowns(up: dict[str, Switchable], routed: Callable[..., str],
                                              dead_url: str) -> None:
    base = routed([("pool", "a", {}), ("pool", dead_url, {})], {"cooldown_time": 60},
                  general={"background_health_checks": True, "health_check_interval": 0.2})
    deadline = time.monotonic() + 5
    while not httpx.get(base + "/health/readiness").json()["cooling_down"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(base + "/health/readiness").json()["cooling_down"][0]["model_name"] == "pool"
    assert up["a"].probes >= 1


class Attempts(CustomLogger):
    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.logged.append(kwargs)


def test_logging_names_the_group_that_answered_and_every_attempt(up: dict[str, Switchable],
                                                                 routed: Callable[..., str]) -> None:
    up["a"].mode = "status"
    spy = Attempts()
    base = routed([("main", "a", {}), ("other", "b", {})], {"fallbacks": [{"main": ["other"]}]}, callbacks=[spy])
    assert said(post(base, ask("main"))) == "from b"
    deadline = time.monotonic() + 5
    while not spy.logged and time.monotonic() < deadline:
        time.sleep(0.01)
    kwargs = spy.logged[0]
    standard = kwargs["standard_logging_object"]
    assert standard["model_group"] == "other" and kwargs["litellm_params"]["metadata"]["model_group"] == "other"
    assert standard["attempted"] == [{"model_group": "main", "deployment": "openai/main", "status": 500,
                                      "code": None}]


def test_cooldowns_are_shared_through_redis(up: dict[str, Switchable], routed: Callable[..., str],
                                            redis_server: RedisServer) -> None:
    up["a"].mode, up["a"].status = "status", 401
    redis = {"redis_host": "127.0.0.1", "redis_port": redis_server.port, "num_retries": 1, "cooldown_time": 30}
    first = routed([("pool", "a", {}), ("pool", "b", {})], redis)
    second = routed([("pool", "a", {}), ("pool", "b", {})], redis)
    for _ in range(2):
        assert said(post(first, ask("pool"))) == "from b"
    assert up["a"].calls == 1
    deadline = time.monotonic() + 5  # the other gateway reads the shared cooldowns about once a second
    while not httpx.get(second + "/health/readiness").json()["cooling_down"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [said(post(second, ask("pool"))) for _ in range(4)] == ["from b"] * 4 and up["a"].calls == 1


def test_a_hung_deployment_times_out_and_the_call_goes_elsewhere(up: dict[str, Switchable],
                                                                 routed: Callable[..., str]) -> None:
    up["a"].mode = "hang"
    base = routed([("pool", "a", {"timeout": 0.5}), ("pool", "b", {"timeout": 0.5})], {"num_retries": 1})
    began = time.monotonic()
    answers = [said(post(base, ask("pool"))) for _ in range(2)]
    assert answers == ["from b", "from b"] and time.monotonic() - began < 4  # at most one 0.5 s wait on a


def test_litellm_settings_fallbacks_and_their_names_are_checked(up: dict[str, Switchable],
                                                                routed: Callable[..., str]) -> None:
    from asgi_llm import ConfigError, parse_config

    up["a"].mode = "status"
    base = routed([("main", "a", {}), ("other", "b", {})],
                  extra={"litellm_settings": {"fallbacks": [{"main": ["other"]}]}})
    assert said(post(base, ask("main"))) == "from b"
    with pytest.raises(ConfigError, match=r"router_settings\.fallbacks\[0\]`: model 'nope' is not in model_list"):
        parse_config({"model_list": [dep("main", "http://127.0.0.1:1")],
                      "router_settings": {"fallbacks": [{"main": ["nope"]}]}})
