"""Prompt management over real sockets: custom managers (seeds 000/001), the store, Langfuse."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from asgi_llm import CustomPromptManagement, GatewayError, parse_config
from asgi_llm.gateway import Gateway
from asgi_llm.prompts.template import Compiled, Version
from asgi_llm.types import Receive, Scope, Send
from tests.conftest import deployment
from tests.servers import Recorder, ServerThread

Sdk = Callable[..., Any]
ROOT = Path(__file__).resolve().parent.parent
HI = [{"role": "user", "content": "hi"}]


def _models(url: str, *names: str) -> list[dict[str, Any]]:
    return [deployment(n, url + "/v1", upstream_model="echo") for n in names]


def test_seed_001_prepends_the_system_message(sdk: Sdk, upstream: tuple[Recorder, str],
                                               gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    base = gateway_factory({"model_list": _models(url, "gemini-1.5-pro"),
                            "litellm_settings": {"callbacks": "examples.custom_prompt.prompt_management"}})
    response = sdk(base).chat.completions.create(model="gemini-1.5-pro", messages=HI, extra_body={"prompt_id": "1234"})
    assert response.choices[0].message.content == "echo: hi"
    system = {"role": "system", "content": "Be a good Bot!"}
    assert recorder.requests[-1]["body"] == {"model": "echo", "messages": [system, {"role": "user", "content": "hi"}]}
    sdk(base).chat.completions.create(model="gemini-1.5-pro", messages=HI, extra_body={"prompt_id": "other"})
    assert recorder.requests[-1]["body"] == {"model": "echo", "messages": HI}  # unchanged, prompt_id not sent


def test_seed_000_model_prefix_selects_the_manager(sdk: Sdk, upstream: tuple[Recorder, str],
                                                   gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    base = gateway_factory({"model_list": _models(url, "gpt-4"), "litellm_settings": {
        "callbacks": "examples.custom_logger.proxy_prompt_management_instance"}})
    reply = sdk(base).chat.completions.create(model="custom-prompt-management/gpt-4", messages=HI,
                                              extra_body={"prompt_id": "1234", "prompt_variables": {"name": "J"}})
    assert reply.choices[0].message.content == "echo: hi"
    assert recorder.requests[-1]["body"] == {"model": "echo", "messages": HI}


class Rewriter(CustomPromptManagement):
    """Async manager that changes all three values, and records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def async_get_chat_completion_prompt(self, model, messages, non_default_params, prompt_id,  # type: ignore[no-untyped-def]
                                               prompt_variables, dynamic_callback_params):
        self.seen.append((model, prompt_id, prompt_variables, dict(non_default_params), dynamic_callback_params))
        target = "missing-model" if prompt_id == "to-nowhere" else "second"
        return target, [{"role": "user", "content": f"templated {prompt_variables}"}], {"temperature": 0.1}


class SyncManager(CustomPromptManagement):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def get_chat_completion_prompt(self, model, messages, non_default_params, prompt_id,  # type: ignore[no-untyped-def]
                                   prompt_variables, dynamic_callback_params):
        self.threads.append(threading.current_thread().name)
        return model, [{"role": "system", "content": "sync"}, *messages], non_default_params

    def should_run_prompt_management(self, prompt_id, dynamic_callback_params):  # type: ignore[no-untyped-def]
        return prompt_id == "sync"


def test_all_three_values_apply_and_managers_are_asked_in_order(upstream: tuple[Recorder, str]) -> None:
    recorder, url = upstream
    sync, rewriter = SyncManager(), Rewriter()
    config = {"model_list": [*_models(url, "first"), deployment("second", url + "/v1", upstream_model="echo")]}
    config["model_list"][0]["litellm_params"]["prompt_label"] = "staging"  # a model's default
    with ServerThread(Gateway(parse_config(config), callbacks=[sync, rewriter])) as server:
        chat = server.url + "/v1/chat/completions"
        body = {"model": "first", "messages": HI, "prompt_id": "p", "prompt_variables": {"x": 1}, "max_tokens": 9}
        assert httpx.post(chat, json=body, timeout=10).status_code == 200
        sent = recorder.requests[-1]["body"]
        assert sent == {"model": "echo", "messages": [{"role": "user", "content": "templated {'x': 1}"}],
                        "max_tokens": 9, "temperature": 0.1}
        assert rewriter.seen[-1][:4] == ("first", "p", {"x": 1}, {"max_tokens": 9})
        assert rewriter.seen[-1][4]["prompt_label"] == "staging"
        assert httpx.post(chat, json={**body, "prompt_label": None}, timeout=10).status_code == 200
        assert rewriter.seen[-1][4]["prompt_label"] is None  # the body wins, even with a null
        assert httpx.post(chat, json={**body, "prompt_id": "sync"}, timeout=10).status_code == 200
        assert recorder.requests[-1]["body"]["messages"][0] == {"role": "system", "content": "sync"}
        assert sync.threads and sync.threads[-1] != threading.main_thread().name  # off the event loop
        nowhere = httpx.post(chat, json={**body, "prompt_id": "to-nowhere"}, timeout=10)
        assert nowhere.status_code == 404 and "'missing-model'" in nowhere.json()["error"]["message"]
        bad = httpx.post(chat, json={**body, "prompt_variables": ["x"]}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt_variables"


STORE = """
prompts:
  - id: greet
    versions:
      - version: 1
        template: "Say hi to {{ name }}."
        variables: {name: {type: string}}
      - version: 2
        labels: [production]
        model: second
        params: {temperature: 0.3}
        messages:
          - {role: system, content: "You are {{ mood }}; answer in {{ n }} words; formal={{ formal }}."}
        variables:
          mood: {type: enum, values: [calm, cheerful], default: calm}
          n: {type: number}
          formal: {type: boolean, default: false}
      - version: 3
        labels: [staging]
        template: "v3 for {{ name }}"
        variables: {name: {type: string}}
"""


@pytest.fixture
def store_gateway(tmp_path: Path, upstream: tuple[Recorder, str]) -> Iterator[tuple[str, Path, Recorder]]:
    recorder, url = upstream
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "greet.yaml").write_text(STORE)
    raw = {"model_list": _models(url, "first", "second"), "prompts": {"path": "prompts", "check_interval": 0}}
    config = parse_config(raw, str(tmp_path / "config.yaml"))
    with ServerThread(Gateway(config)) as server:
        yield server.url + "/v1/chat/completions", tmp_path / "prompts", recorder


def test_store_renders_and_resolves_versions(store_gateway: tuple[str, Path, Recorder]) -> None:
    chat, _, recorder = store_gateway
    base = {"model": "first", "messages": HI, "prompt_id": "greet"}
    ok = httpx.post(chat, json={**base, "prompt_variables": {"n": 5, "mood": "cheerful"}}, timeout=10)
    assert ok.status_code == 200
    assert recorder.requests[-1]["body"] == {
        "model": "echo", "temperature": 0.3,
        "messages": [{"role": "system", "content": "You are cheerful; answer in 5 words; formal=false."}, *HI]}
    httpx.post(chat, json={**base, "prompt_version": 1, "prompt_variables": {"name": "{{ n }} <b>"}}, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0] == {"role": "user", "content": "Say hi to {{ n }} <b>."}
    httpx.post(chat, json={**base, "prompt_label": "staging", "prompt_variables": {"name": "Al"}}, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "v3 for Al"
    httpx.post(chat, json={**base, "prompt_version": "1", "prompt_label": "staging",
                           "prompt_variables": {"name": "Al"}}, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "Say hi to Al."  # version beats label


def test_store_params_yield_to_the_request_and_the_store_answers_by_name(
        store_gateway: tuple[str, Path, Recorder]) -> None:
    chat, _, recorder = store_gateway
    given = {"model": "first", "messages": HI, "prompt_id": "greet", "prompt_variables": {"n": 2},
             "temperature": 0.9, "metadata": {"team": "a"}}
    assert httpx.post(chat, json=given, timeout=10).status_code == 200
    sent = recorder.requests[-1]["body"]
    assert sent["temperature"] == 0.9 and sent["model"] == "echo" and "metadata" not in sent
    named = {"model": "prompt-store/first", "messages": HI, "prompt_id": "greet", "prompt_version": 1,
             "prompt_variables": {"name": "Bo"}}
    assert httpx.post(chat, json=named, timeout=10).status_code == 200
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "Say hi to Bo."
    calls = len(recorder.requests)
    missing = httpx.post(chat, json={"model": "prompt-store/first", "messages": HI}, timeout=10)
    unknown = httpx.post(chat, json={**named, "prompt_id": "nope"}, timeout=10)
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "prompt_id")
    assert (unknown.status_code, unknown.json()["error"]["param"]) == (404, "prompt_id")
    assert len(recorder.requests) == calls  # neither reached the model


@pytest.mark.parametrize(("extra", "status", "says"), [
    ({"prompt_variables": {}}, 400, "n (missing, required)"),
    ({"prompt_variables": {"n": "five", "mood": "angry", "who": 1}},
     400, "who (not declared); mood (expected one of calm, cheerful, got 'angry'); n (expected number, got str)"),
    ({"prompt_variables": {"n": True}}, 400, "n (expected number, got bool)"),
    ({"prompt_id": "nope"}, 404, "Prompt 'nope' is not in the prompt store."),
    ({"prompt_version": 9}, 404, "has no version 9"),
    ({"prompt_label": "canary"}, 404, "has no label 'canary'"),
])
def test_store_errors_name_each_problem(extra: dict[str, Any], status: int, says: str,
                                        store_gateway: tuple[str, Path, Recorder]) -> None:
    chat, _, recorder = store_gateway
    resp = httpx.post(chat, json={"model": "first", "messages": HI, "prompt_id": "greet", **extra}, timeout=10)
    assert resp.status_code == status and says in resp.json()["error"]["message"], resp.text
    assert recorder.requests == []  # the model was never called


def test_render_cache_tells_equal_values_of_other_types_apart() -> None:
    """The render cache is keyed by the values' JSON: ``1``, ``1.0`` and ``true`` compare equal in
    Python but render differently (or not at all), so no one may be served another's entry."""
    version = msgspec.convert({"version": 1, "template": "{{ n }}|{{ s }}", "variables": {
        "n": {"type": "number"}, "s": {"type": "string", "default": "x"}}}, Version)
    compiled = Compiled("p", version)
    text = [compiled.render(given)[0]["content"] for given in ({"n": 1}, {"n": 1.0}, {"n": 1}, {"n": 2, "s": "1"})]
    assert text == ["1|x", "1.0|x", "1|x", "2|1"]
    with pytest.raises(GatewayError, match="n \\(expected number, got bool\\)"):
        compiled.render({"n": True})  # equal to the cached 1, and still refused
    assert compiled.render({"n": float("nan")})[0]["content"] == "nan|x"  # its JSON is null: not cached
    with pytest.raises(GatewayError, match="n \\(expected number, got NoneType\\)"):
        compiled.render({"n": None})
    first = compiled.render({"n": 3})
    first[0]["content"] = "edited by a hook"
    assert compiled.render({"n": 3})[0]["content"] == "3|x"  # callers get copies of the cached messages


def test_render_cache_copies_every_message_and_appends_the_clients() -> None:
    """One cached message and several take different copy paths; both hand out fresh dicts, the
    client's messages after them, and a hook's edit of any of them never reaches the cache."""
    for count in (1, 2, 3):
        version = msgspec.convert({"version": 1, "messages": [
            {"role": "system", "content": f"rule {i} for {{{{ who }}}}"} for i in range(count)],
            "variables": {"who": {"type": "string"}}}, Version)
        compiled = Compiled("p", version)
        client = [{"role": "user", "content": "hi"}]
        for _ in range(2):  # a miss, then a hit
            got = compiled.render({"who": "Bo"}, client)
            assert got == [*({"role": "system", "content": f"rule {i} for Bo"} for i in range(count)), *client]
            assert got[-1] is client[0]  # the client's own message, not a copy
            for message in got[:count]:
                message["content"] = "edited by a hook"


def test_store_reloads_changes_and_keeps_the_last_good_file(store_gateway: tuple[str, Path, Recorder],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    chat, folder, recorder = store_gateway
    body = {"model": "first", "messages": HI, "prompt_id": "greet", "prompt_version": 1,
            "prompt_variables": {"name": "Bo"}}
    (folder / "greet.yaml").write_text(STORE.replace("Say hi to", "Wave at"))
    httpx.post(chat, json=body, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "Wave at Bo."
    (folder / "greet.yaml").write_text(STORE.replace("{{ name }}.", "{{ nobody }}."))  # undeclared: broken
    with caplog.at_level("ERROR", logger="asgi_llm.prompts"):
        httpx.post(chat, json=body, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "Wave at Bo."
    assert "greet.yaml is broken" in caplog.text and "keeping its last good version" in caplog.text
    (folder / "more.yaml").write_text("id: extra\nversions: [{version: 1, template: 'extra!'}]\n")
    httpx.post(chat, json={"model": "first", "messages": HI, "prompt_id": "extra"}, timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "extra!"


class FakeLangfuse:
    """Langfuse's public prompt endpoint on a real socket; counts requests, can fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing = False
        self.prompts = {
            "text-prompt": {"name": "text-prompt", "version": 3, "type": "text", "labels": ["production"],
                            "prompt": "Write about {{ topic }} for {{ who }}.",
                            "config": {"model": "second", "temperature": 0.7}},
            "chat-prompt": {"name": "chat-prompt", "version": 1, "type": "chat", "labels": [],
                            "prompt": [{"role": "system", "content": "Be {{ style }}."},
                                       {"role": "user", "content": "{{ question }}"}], "config": {}},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        self.calls.append(scope["path"] + "?" + scope["query_string"].decode())
        expected = b"Basic " + base64.b64encode(b"pk-lf:sk-lf")
        name = scope["path"].rsplit("/", 1)[-1]
        if headers.get(b"authorization") != expected:
            status, payload = 401, {"error": "unauthorized"}
        elif self.failing:
            status, payload = 500, {"error": "down"}
        elif name in self.prompts:
            status, payload = 200, self.prompts[name]
        else:
            status, payload = 404, {"error": "LangfuseNotFoundError"}
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


# long enough for the first calls of a test to be cache hits even on a loaded machine (0.5 s was not)
LANGFUSE_TTL = 1.5


@pytest.fixture
def langfuse_gateway(upstream: tuple[Recorder, str]) -> Iterator[tuple[str, FakeLangfuse, Recorder]]:
    recorder, url = upstream
    fake = FakeLangfuse()
    with ServerThread(fake) as lf:
        config = {"model_list": [
            {"model_name": "my-langfuse-model", "litellm_params": {
                "model": "langfuse/first", "prompt_id": "text-prompt", "langfuse_public_key": "pk-lf",
                "langfuse_secret_key": "sk-lf", "langfuse_host": lf.url}},
            *_models(url, "first", "second")], "prompts": {"langfuse_cache_ttl": LANGFUSE_TTL}}
        with ServerThread(Gateway(parse_config(config))) as gw:
            yield gw.url + "/v1/chat/completions", fake, recorder


def test_langfuse_compiles_caches_and_refreshes(sdk: Sdk, langfuse_gateway: tuple[str, FakeLangfuse, Recorder]
                                                ) -> None:
    chat, fake, recorder = langfuse_gateway
    client = sdk(chat.removesuffix("/v1/chat/completions"))
    client.chat.completions.create(model="my-langfuse-model", messages=[{"role": "user", "content": "IGNORED"}],
                                   extra_body={"prompt_variables": {"topic": "tides", "who": "kids"}})
    assert recorder.requests[-1]["body"] == {"model": "echo", "temperature": 0.7,  # config model "second"
                                             "messages": [{"role": "user", "content": "Write about tides for kids."}]}
    assert fake.calls == ["/api/public/v2/prompts/text-prompt?"]
    httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_id": "chat-prompt",
                           "prompt_label": "production", "prompt_variables": {"style": "brief", "question": "Why?"}},
               timeout=10)
    assert recorder.requests[-1]["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Why?"}]
    assert fake.calls[-1] == "/api/public/v2/prompts/chat-prompt?label=production"
    for _ in range(3):  # cache hits: Langfuse is not asked again
        httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI}, timeout=10)
    assert len(fake.calls) == 2
    fake.prompts["text-prompt"]["prompt"] = "New text about {{ topic }}."
    time.sleep(LANGFUSE_TTL + 0.1)  # past the TTL: served stale once, refreshed in the background
    httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_variables": {"topic": "x"}},
               timeout=10)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "Write about x for {{ who }}."
    deadline = time.monotonic() + 3
    while True:  # the refresh lands in the background: the next calls get the new text
        httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_variables": {"topic": "x"}},
                   timeout=10)
        if recorder.requests[-1]["body"]["messages"][0]["content"] != "Write about x for {{ who }}." \
                or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "New text about x."
    assert len(fake.calls) == 3  # one refresh
    fake.failing = True
    time.sleep(LANGFUSE_TTL + 0.1)
    before = len(recorder.requests)
    resp = httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_variables": {"topic": "y"}},
                      timeout=10)
    assert resp.status_code == 200 and len(recorder.requests) == before + 1  # failed refresh keeps the stale copy
    assert recorder.requests[-1]["body"]["messages"][0]["content"] == "New text about y."


def test_langfuse_missing_prompt_and_outage(langfuse_gateway: tuple[str, FakeLangfuse, Recorder],
                                            upstream: tuple[Recorder, str]) -> None:
    chat, fake, recorder = langfuse_gateway
    missing = httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_id": "ghost"}, timeout=10)
    assert missing.status_code == 404 and "'ghost'" in missing.json()["error"]["message"]
    fake.failing = True
    down = httpx.post(chat, json={"model": "my-langfuse-model", "messages": HI, "prompt_id": "chat-prompt"},
                      timeout=10)
    assert down.status_code == 502 and down.json()["error"]["code"] == "prompt_source_unavailable"
    assert recorder.requests == []  # neither called the model
