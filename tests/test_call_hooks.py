"""Call hooks over real sockets: the seed 004 example file and the hook contract."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.exceptions import HTTPException

from asgi_llm import CustomLogger, DualCache, UserAPIKeyAuth, parse_config
from asgi_llm.gateway import Gateway, create_app
from examples.custom_callbacks import proxy_handler_instance
from tests.conftest import deployment, make_config
from tests.servers import Recorder, ServerThread

Sdk = Callable[..., Any]
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture
def example_gateway() -> Iterator[str]:
    app = create_app(ROOT / "examples" / "hooks_config.yaml")  # resolves custom_callbacks.py beside it
    with ServerThread(app) as server:
        yield server.url


def _chat(text: str, model: str = "gpt-3.5-turbo") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def test_example_modify_routes_to_the_new_model(sdk: Sdk, example_gateway: str) -> None:
    client = sdk(example_gateway)
    reply = client.chat.completions.create(**_chat("good morning good sir"))
    assert reply.choices[0].message.content == "Answered by my-new-model."
    stream = client.chat.completions.create(**_chat("good morning"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Answered by my-new-model."


def test_example_reject_with_a_message_on_every_route(sdk: Sdk, example_gateway: str) -> None:
    client = sdk(example_gateway)
    reply = client.chat.completions.create(**_chat("Hello world"))
    assert reply.object == "chat.completion" and reply.model == "gpt-3.5-turbo"
    assert reply.choices[0].message.content == "This is an invalid response"
    assert reply.choices[0].finish_reason == "stop" and reply.usage is not None and reply.usage.total_tokens == 0
    chunks = list(client.chat.completions.create(**_chat("Hello world"), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "This is an invalid response"
    assert chunks[-1].choices[0].finish_reason == "stop"
    done = client.completions.create(model="gpt-3.5-turbo", prompt="Hello world")
    assert done.object == "text_completion" and done.choices[0].text == "This is an invalid response"
    pieces = list(client.completions.create(model="gpt-3.5-turbo", prompt="Hello world", stream=True))
    assert "".join(p.choices[0].text for p in pieces) == "This is an invalid response"
    assert pieces[-1].choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="Hello world")
    assert info.value.body["message"] == "This is an invalid response"  # type: ignore[index]


def test_example_reject_by_raising_and_failure_hook_on_a_pre_call_403(sdk: Sdk, example_gateway: str) -> None:
    client = sdk(example_gateway)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(**_chat("tell me about the forbidden topic"), stream=stream)
        assert info.value.body["message"] == "Violated content safety policy"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(**_chat("hi", model="blocked-model"))
    assert denied.value.body["message"] == "Blocked by policy: ask your admin for access."  # type: ignore[index]
    assert denied.value.body["type"] == "permission_error"  # type: ignore[index]


def test_in_place_changes_reach_the_upstream_and_failure_hook_replaces_a_400(
        upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    config = {"model_list": [deployment("gpt-3.5-turbo", url + "/v1", upstream_model="echo"),
                             deployment("my-new-model", url + "/v1", upstream_model="echo"),
                             deployment("strict-model", url + "/v1", upstream_model="bad-request")],
              "litellm_settings": {"callbacks": "examples.custom_callbacks.proxy_handler_instance"}}  # on sys.path
    base = gateway_factory(config)
    resp = httpx.post(base + "/v1/chat/completions", json={**_chat("hi"), "metadata": {"trace": "t1"}}, timeout=10)
    assert resp.status_code == 200
    sent = recorder.requests[-1]
    assert sent["body"] == {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}  # no metadata
    failed = httpx.post(base + "/v1/chat/completions", json=_chat("hi", model="strict-model"), timeout=10)
    assert failed.status_code == 400 and failed.json()["error"]["message"] == "strict-model refused this request"
    assert proxy_handler_instance.failures[-1] == "GatewayError"


class Recording(CustomLogger):
    """A configurable hook for the contract tests."""

    def __init__(self, name: str, log: list[str], action: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.name, self.log, self.action = name, log, action

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> Any:
        self.log.append(f"{self.name}:{data['messages'][-1]['content']}")
        data["metadata"].setdefault("seen", []).append(self.name)
        return self.action(data) if self.action else data


def _gateway(upstream: tuple[Recorder, str], callbacks: list[CustomLogger], **general: Any) -> ServerThread:
    config = parse_config(make_config(upstream[1], **general))
    return ServerThread(Gateway(config, callbacks=callbacks))


def test_hooks_run_in_order_each_seeing_the_last_output(upstream: tuple[Recorder, str]) -> None:
    log: list[str] = []

    def replace(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "messages": [{"role": "user", "content": "replaced"}], "temperature": 0.5}

    def append(data: dict[str, Any]) -> None:
        data["messages"][0]["content"] += "+second"

    hooks = [Recording("first", log, replace), Recording("second", log, append), Recording("third", log)]
    with _gateway(upstream, hooks) as server:
        resp = httpx.post(server.url + "/v1/chat/completions", json=_chat("orig", model="echo"), timeout=10)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: replaced+second"
    assert log == ["first:orig", "second:replaced", "third:replaced+second"]
    assert upstream[0].requests[-1]["body"] == {"model": "echo", "temperature": 0.5,
                                                "messages": [{"role": "user", "content": "replaced+second"}]}


@pytest.mark.parametrize(("detail", "message"), [
    ("plain words", "plain words"),
    ({"error": "x"}, "x"),
    ({"error": {"message": "x", "extra": 1}}, "x"),
    ({"message": "x"}, "x"),
    ({"reason": "quota", "limit": 3}, '{"reason":"quota","limit":3}'),
])
def test_http_exception_detail_shapes(detail: Any, message: str, upstream: tuple[Recorder, str]) -> None:
    def reject(data: dict[str, Any]) -> None:
        raise HTTPException(status_code=418, detail=detail)

    with _gateway(upstream, [Recording("r", [], reject)]) as server:
        resp = httpx.post(server.url + "/v1/chat/completions", json=_chat("x", model="echo"), timeout=10)
    assert resp.status_code == 418
    assert resp.json() == {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                     "code": "418"}}
    assert upstream[0].requests == []


def test_429_headers_pass_through(upstream: tuple[Recorder, str]) -> None:
    def limit(data: dict[str, Any]) -> None:
        raise HTTPException(status_code=429, detail="slow down", headers={"Retry-After": "7", "X-Limit": "10"})

    with _gateway(upstream, [Recording("r", [], limit)]) as server:
        resp = httpx.post(server.url + "/v1/chat/completions", json=_chat("x", model="echo"), timeout=10)
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7" and resp.headers["x-limit"] == "10"
    assert resp.json()["error"]["type"] == "rate_limit_error"


def test_plain_exceptions_give_500_or_their_status_and_the_gateway_keeps_serving(upstream: tuple[Recorder, str]
                                                                                ) -> None:
    class Teapot(Exception):
        status_code = 418

    def fail(data: dict[str, Any]) -> Any:
        content = data["messages"][0]["content"]
        if content == "value":
            raise ValueError("bad value in hook")
        if content == "returned":
            return Teapot("returned teapot")
        return data

    with _gateway(upstream, [Recording("r", [], fail)]) as server:
        url = server.url + "/v1/chat/completions"
        resp = httpx.post(url, json=_chat("value", model="echo"), timeout=10)
        assert resp.status_code == 500
        assert resp.json()["error"] == {"message": "bad value in hook", "type": "internal_server_error",
                                        "param": None, "code": "500"}
        assert httpx.post(url, json=_chat("returned", model="echo"), timeout=10).status_code == 418
        assert httpx.post(url, json=_chat("fine", model="echo"), timeout=10).status_code == 200


class Parent(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> Any:
        data["messages"][0]["content"] = "from parent"
        await cache.async_set_cache("calls", (await cache.async_get_cache("calls") or 0) + 1, ttl=60)
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        response.choices[0].message.content += f" [{data['metadata'].get('seen', 'parent')}]"
        response["x_checked"] = True
        return None


class Child(Parent):
    pass


def test_inherited_hooks_and_success_hook_mutation(upstream: tuple[Recorder, str]) -> None:
    child = Child()
    with _gateway(upstream, [child]) as server:
        resp = httpx.post(server.url + "/v1/chat/completions", json=_chat("x", model="echo"), timeout=10)
        again = httpx.post(server.url + "/v1/chat/completions", json=_chat("x", model="echo"), timeout=10)
        stream = httpx.post(server.url + "/v1/chat/completions", json={**_chat("x", model="echo"), "stream": True},
                            timeout=10)
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "echo: from parent [parent]" and body["x_checked"] is True
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert again.status_code == 200 and upstream[0].requests[-2]["body"]["messages"][0]["content"] == "from parent"
    assert stream.text.endswith("data: [DONE]\n\n")  # streams are not held for the success hook


def test_success_hook_replacement_and_attribute_access(upstream: tuple[Recorder, str]) -> None:
    seen: dict[str, Any] = {}

    class Replace(CustomLogger):
        async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                               response: Any) -> Any:
            seen["attr"] = response.choices[0].message.content
            seen["key"] = response["choices"][0]["message"]["content"]
            seen["missing"] = response.choices[0].message.tool_calls
            seen["user"] = user_api_key_dict.end_user_id
            return {"id": "replaced", "object": "chat.completion", "created": 1, "model": "r",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "replacement"}}]}

    with _gateway(upstream, [Replace()]) as server:
        resp = httpx.post(server.url + "/v1/chat/completions", json={**_chat("q", model="echo"), "user": "u-1"},
                          timeout=10)
    assert resp.json()["choices"][0]["message"]["content"] == "replacement"
    assert seen == {"attr": "echo: q", "key": "echo: q", "missing": None, "user": "u-1"}


def test_enforce_user_param(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(make_config(upstream[1], enforce_user_param=True))
    url = base + "/v1/chat/completions"
    missing = httpx.post(url, json=_chat("x", model="echo"), timeout=10)
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["param"] == "user" and "enforce_user_param" in error["message"]
    assert httpx.post(url, json={**_chat("x", model="echo"), "user": "u"}, timeout=10).status_code == 200
    assert httpx.post(url, json={**_chat("x", model="echo"), "user": None}, timeout=10).status_code == 200
    assert httpx.post(base + "/v1/embeddings", json={"model": "echo", "input": "x"}, timeout=10).status_code == 400
    assert httpx.get(base + "/v1/models", timeout=10).status_code == 200


def test_virtual_keys(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> None:
    import hashlib

    seen: list[UserAPIKeyAuth] = []

    class Spy(CustomLogger):
        async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache,
                                      data: dict[str, Any], call_type: str) -> Any:
            seen.append(user_api_key_dict)
            return data

    digest = hashlib.sha256(b"sk-team-a").hexdigest()
    config = make_config(upstream[1], master_key="sk-master")
    config["keys"] = [{"key_hash": digest, "key_alias": "team-a", "user_id": "alice", "team_id": "a",
                       "models": ["echo"], "metadata": {"tier": "gold"}, "rpm_limit": 10}]
    base = gateway_factory(config, callbacks=[Spy()])
    url = base + "/v1/chat/completions"
    ok = httpx.post(url, json={**_chat("x", model="echo"), "user": "end-1"}, timeout=10,
                    headers={"Authorization": "Bearer sk-team-a"})
    assert ok.status_code == 200
    who = seen[-1]
    assert (who.api_key, who.key_alias, who.user_id, who.team_id, who.end_user_id, who.models, who.metadata,
            who.rpm_limit, who.request_route) == (digest, "team-a", "alice", "a", "end-1", ["echo"],
                                                  {"tier": "gold"}, 10, "/v1/chat/completions")
    other = httpx.post(url, json=_chat("x", model="flaky"), timeout=10, headers={"Authorization": "Bearer sk-team-a"})
    assert other.status_code == 403 and other.json()["error"]["type"] == "permission_error"
    assert httpx.post(url, json=_chat("x", model="echo"), timeout=10,
                      headers={"Authorization": "Bearer sk-team-b"}).status_code == 401
    master = httpx.post(url, json=_chat("x", model="flaky"), timeout=10, headers={"Authorization": "Bearer sk-master"})
    assert master.status_code == 503 and seen[-1].key_alias == "master_key"  # master may use every model
    assert "sk-team-a" not in json.dumps(upstream[0].requests[0]["headers"])
