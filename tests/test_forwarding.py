"""Forwarding over real sockets: what goes upstream, what comes back, retries, timeouts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, deployment, make_config
from tests.servers import RawServer, Recorder

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def post(base: str, body: Any, path: str = "/v1/chat/completions", **kw: Any) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=15, **kw)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    payload = resp.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
    return dict(payload["error"])


def test_client_keys_and_routing_fields_never_travel(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    body = {**CHAT, "api_base": "http://10.0.0.1/v1", "base_url": "http://evil", "api_key": "sk-body",
            "extra_headers": {"x": "y"}, "user_config": {"model_list": []}, "metadata": {"a": 1},
            "mock_response": "nope", "temperature": 0.2, "custom_field": [1, 2]}
    resp = post(gateway, body, headers={"Authorization": "Bearer sk-client", "api-key": "sk-azure",
                                        "x-api-key": "sk-x", "cookie": "s=1", "x-request-id": "req-7",
                                        "Connection": "keep-alive, x-hop", "x-hop": "1"})
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: hi"
    sent = recorder.requests[-1]
    assert sent["body"] == {"model": "echo", "messages": CHAT["messages"], "temperature": 0.2,
                            "custom_field": [1, 2]}
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    for leaked in ("api-key", "x-api-key", "cookie", "x-hop"):
        assert leaked not in sent["headers"]
    assert sent["headers"]["x-request-id"] == "req-7"
    assert "sk-client" not in json.dumps(sent["headers"]) and "sk-body" not in sent["raw"].decode()
    assert resp.headers["x-upstream"] == "yes"
    assert "keep-alive" not in resp.headers and "proxy-authenticate" not in resp.headers  # hop-by-hop, upstream's
    assert int(resp.headers["content-length"]) == len(resp.content)


def test_deployment_model_name_is_sent_upstream(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]
                                                ) -> None:
    recorder, url = upstream
    base = gateway_factory({"model_list": [deployment("friendly", url + "/v1", upstream_model="echo")]})
    assert post(base, {**CHAT, "model": "friendly"}).status_code == 200
    assert recorder.requests[-1]["body"]["model"] == "echo"


def test_streaming_is_relayed(gateway: str) -> None:
    with httpx.stream("POST", gateway + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) == 4


def test_retries_on_5xx_then_succeeds(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    config = make_config(url)
    config["litellm_settings"] = {"num_retries": 2}
    config["general_settings"] = {"upstream": {"retry_backoff": 0.01}}
    base = gateway_factory(config)
    assert post(base, {**CHAT, "model": "flaky"}).status_code == 200
    assert recorder.attempts["flaky"] == 3


def test_no_retries_means_one_attempt(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    resp = post(gateway, {**CHAT, "model": "flaky"})
    assert resp.status_code == 503 and error_of(resp)["message"] == "overloaded"
    assert recorder.attempts["flaky"] == 1


def test_429_keeps_retry_after_and_retry_honours_it(upstream: tuple[Recorder, str],
                                                    gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    plain = gateway_factory(make_config(url))
    resp = post(plain, {**CHAT, "model": "busy"})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "0.3"
    assert error_of(resp)["type"] == "rate_limit_error"
    recorder.attempts.clear()
    config = make_config(url)
    config["model_list"] = [deployment("busy", url + "/v1", max_retries=1)]
    started = time.monotonic()
    assert post(gateway_factory(config), {**CHAT, "model": "busy"}).status_code == 200
    assert time.monotonic() - started >= 0.3  # waited what Retry-After asked
    assert recorder.attempts["busy"] == 2


def test_timeout_gives_504(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    _, url = upstream
    base = gateway_factory({"model_list": [deployment("slow", url + "/v1", timeout=0.3)]})
    resp = post(base, {**CHAT, "model": "slow"})
    assert resp.status_code == 504 and error_of(resp)["type"] == "timeout_error"


def test_a_stream_whose_upstream_falls_silent_ends_after_stream_timeout(
        upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    """``stream_timeout`` is the longest silence inside a stream: what came is served, then an SSE
    error event and ``[DONE]``, and the upstream connection is closed."""
    recorder, url = upstream
    base = gateway_factory({"model_list": [deployment("stall-stream", url + "/v1", stream_timeout=0.4)]})
    started = time.monotonic()
    with httpx.stream("POST", base + "/v1/chat/completions", json={**CHAT, "model": "stall-stream", "stream": True},
                      timeout=10) as resp:
        text = "".join(resp.iter_text())
    took = time.monotonic() - started
    assert resp.status_code == 200 and 0.4 <= took < 3
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]] == ["Hello", " then"]
    error = json.loads(events[2])["error"]
    assert error["type"] == "timeout_error" and error["code"] == "upstream_timeout" and events[3:] == ["[DONE]"]
    deadline = time.monotonic() + 3
    while "stall-stream" not in [m for m, _ in recorder.closed] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "stall-stream" in [m for m, _ in recorder.closed]  # the gateway hung up on it


def test_a_stream_whose_upstream_never_answers_gets_504(upstream: tuple[Recorder, str],
                                                         gateway_factory: Callable[..., str]) -> None:
    _, url = upstream
    base = gateway_factory({"model_list": [deployment("delay-3000", url + "/v1", stream_timeout=0.3)]})
    started = time.monotonic()
    resp = post(base, {**CHAT, "model": "delay-3000", "stream": True})
    assert resp.status_code == 504 and error_of(resp)["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2


def test_unreachable_upstream_gives_502(gateway_factory: Callable[..., str]) -> None:
    with RawServer(b"") as dead:
        port = dead.port  # a port that was ours and is now closed
    base = gateway_factory({"model_list": [deployment("gone", f"http://127.0.0.1:{port}/v1")]})
    resp = post(base, {**CHAT, "model": "gone"})
    err = error_of(resp)
    assert resp.status_code == 502 and "unreachable" in err["message"] and UPSTREAM_KEY not in resp.text


CUT_OFF = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"


@pytest.mark.parametrize("reply", [b"garbage that is not HTTP\r\n\r\n", CUT_OFF])
def test_unusable_replies_give_502(reply: bytes, gateway_factory: Callable[..., str]) -> None:
    with RawServer(reply) as raw:
        base = gateway_factory({"model_list": [deployment("raw", raw.url + "/v1")]})
        resp = post(base, {**CHAT, "model": "raw"})
    assert resp.status_code == 502 and error_of(resp)["code"] == "upstream_unavailable"
    assert UPSTREAM_KEY not in resp.text


def test_invalid_json_reply_gives_502(gateway: str) -> None:
    resp = post(gateway, {**CHAT, "model": "not-json"})
    assert resp.status_code == 502 and "not valid JSON" in error_of(resp)["message"]


def test_stream_cut_off_ends_with_error_event_and_done(gateway: str) -> None:
    with httpx.stream("POST", gateway + "/v1/chat/completions", json={**CHAT, "model": "cut-stream", "stream": True},
                      timeout=10) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_unavailable" and error["type"] == "upstream_error"
    assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]["content"] == "one "
    assert events[1] == 'data: {"trunc'  # the partial event was closed, not glued to the error


def test_master_key(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    base = gateway_factory(make_config(url, master_key="sk-master-1"))
    assert httpx.get(base + "/health/liveliness").status_code == 200
    missing = post(base, CHAT)
    assert missing.status_code == 401 and error_of(missing)["type"] == "authentication_error"
    assert post(base, CHAT, headers={"Authorization": "Bearer sk-master-2"}).status_code == 401
    assert httpx.get(base + "/v1/models").status_code == 401
    assert httpx.get(base + "/v1/models", headers={"Authorization": "Bearer sk-master-1"}).status_code == 200
    ok = post(base, CHAT, headers={"Authorization": "Bearer sk-master-1"})
    assert ok.status_code == 200
    assert "sk-master-1" not in json.dumps(recorder.requests[-1]["headers"])


@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1/moderations", "/v1/responses", "/images/generations"])
def test_other_model_routes_are_forwarded_intact(path: str, gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    body = {"model": "echo", "prompt": "a cat", "size": "256x256", "input": ["x", {"y": 1}], "nested": {"n": [1.5]}}
    resp = post(gateway, body, path=path)
    assert resp.status_code == 200
    assert recorder.requests[-1]["path"] == "/v1" + path.removeprefix("/v1")
    assert recorder.requests[-1]["body"] == body and resp.json()["received"] == body


def test_deployments_sharing_a_name_are_used_in_turn(upstream: tuple[Recorder, str],
                                                     gateway_factory: Callable[..., str]) -> None:
    from asgi_llm import Router, parse_config

    recorder, url = upstream
    config = {"model_list": [deployment("pool", url + "/v1", upstream_model="echo"),
                             deployment("pool", url + "/v1", upstream_model="flaky")]}
    router = Router(parse_config(config))
    assert router.find("pool") is router.find("pool")  # settings look-ups take no routing turn
    assert [router.pick("pool").model for _ in range(4)] == ["echo", "flaky", "echo", "flaky"]
    base = gateway_factory(config)
    recorder.fail_first = 0
    for _ in range(4):
        assert post(base, {**CHAT, "model": "pool"}).status_code == 200
    assert [r["body"]["model"] for r in recorder.requests] == ["echo", "flaky", "echo", "flaky"]
