"""Providers through the gateway with the openai SDK: OpenAI-compatible prefixes, Azure OpenAI and Anthropic
against fake servers that check the providers' documented shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_llm import ConfigError, CustomLogger, UserAPIKeyAuth, parse_config
from asgi_llm.upstream.anthropic_stream import AnthropicStream
from asgi_llm.upstream.router import Router
from tests.provider_servers import ANTHROPIC_KEY, AZURE_KEY, AZURE_TOKEN, FakeAnthropic, FakeAzure, stream_events
from tests.servers import Recorder, ServerThread

CLIENT_KEY = "sk-client-provider-01"
MASTER = {"general_settings": {"master_key": CLIENT_KEY}}


@pytest.fixture(scope="module")
def azure_server() -> Iterator[tuple[FakeAzure, str]]:
    fake = FakeAzure()
    with ServerThread(fake) as server:
        yield fake, server.url


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    with ServerThread(fake) as server:
        yield fake, server.url


@pytest.fixture
def azure(azure_server: tuple[FakeAzure, str]) -> tuple[FakeAzure, str]:
    azure_server[0].seen.clear()
    azure_server[0].filtered = False
    return azure_server


@pytest.fixture
def anthropic(anthropic_server: tuple[FakeAnthropic, str]) -> tuple[FakeAnthropic, str]:
    anthropic_server[0].seen.clear()
    anthropic_server[0].mode = "ok"
    anthropic_server[0].gone = 0
    return anthropic_server


def client(base: str, sdk: Callable[..., Any]) -> openai.OpenAI:
    made: openai.OpenAI = sdk(base, key=CLIENT_KEY)
    return made


# --- OpenAI-compatible prefixes ----------------------------------------------------------------------------------

def test_compatible_prefixes_forward_with_their_defaults(upstream: tuple[Recorder, str],
                                                         gateway_factory: Callable[..., str], sdk: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, api_base = upstream
    monkeypatch.setenv("GROQ_API_KEY", "gsk-from-the-environment-01")
    base = gateway_factory({"model_list": [
        {"model_name": "fast", "litellm_params": {"model": "groq/llama-3.1-8b-instant", "api_base": api_base + "/v1"}},
        {"model_name": "local", "litellm_params": {"model": "hosted_vllm/meta/llama-3", "api_base": api_base + "/v1",
                                                   "api_key": "vllm-key-0123456789"}}], **MASTER})
    answer = client(base, sdk).chat.completions.create(model="fast", messages=[{"role": "user", "content": "yo"}])
    sent = recorder.requests[-1]
    assert answer.choices[0].message.content and sent["body"]["model"] == "llama-3.1-8b-instant"
    assert sent["headers"]["authorization"] == "Bearer gsk-from-the-environment-01"  # never the client's key
    client(base, sdk).chat.completions.create(model="local", messages=[{"role": "user", "content": "yo"}])
    assert recorder.requests[-1]["body"]["model"] == "meta/llama-3"
    defaults = Router(parse_config({"model_list": [
        {"model_name": name, "litellm_params": {"model": f"{name}/m"}} for name in
        ("groq", "deepseek", "mistral", "openrouter", "ollama_chat", "nvidia_nim", "text-completion-openai")]}))
    assert [defaults.find(n).api_base for n in ("groq", "openrouter", "ollama_chat")] == [  # type: ignore[union-attr]
        "https://api.groq.com/openai/v1", "https://openrouter.ai/api/v1", "http://localhost:11434/v1"]


@pytest.mark.parametrize(("model", "says"), [
    ("hosted_vllm/llama", "hosted_vllm/ deployments need one"),
    ("azure/gpt-4o", "azure/ deployments need one"),
    ("bedrock/claude", "unknown provider in 'bedrock/claude'"),
])
def test_provider_configs_that_cannot_run(model: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_API_BASE", "HOSTED_VLLM_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": model}}]})
    assert says in str(caught.value) and "\n" not in str(caught.value)
    if "unknown" in says:
        assert "anthropic" in str(caught.value) and "groq" in str(caught.value)


# --- Azure -------------------------------------------------------------------------------------------------------

def azure_config(url: str, **params: Any) -> dict[str, Any]:
    return {"model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "azure/prod-gpt4o", "api_base": url,
                                                    "api_key": AZURE_KEY, **params}},
        {"model_name": "embed", "litellm_params": {"model": "azure/prod-embed", "api_base": url,
                                                   "api_key": AZURE_KEY}}], **MASTER}


def test_azure_chat_stream_and_embeddings(azure: tuple[FakeAzure, str], gateway_factory: Callable[..., str],
                                          sdk: Any) -> None:
    fake, url = azure
    c = client(gateway_factory(azure_config(url)), sdk)
    answer = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "azure prod-gpt4o says hi"
    path, query, headers, _ = fake.seen[-1]
    assert path == "/openai/deployments/prod-gpt4o/chat/completions" and query["api-version"] == ["2024-10-21"]
    assert headers["api-key"] == AZURE_KEY and "authorization" not in headers and CLIENT_KEY not in str(headers)
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True) if ch.choices)
    assert text == "azure says hi"
    vectors = c.embeddings.create(model="embed", input="x")
    assert vectors.data[0].embedding == [0.25, 0.75] and fake.seen[-1][0] == "/openai/deployments/prod-embed/embeddings"


def test_azure_ad_token_and_the_v1_form(azure: tuple[FakeAzure, str], gateway_factory: Callable[..., str],
                                        sdk: Any) -> None:
    fake, url = azure
    config = azure_config(url, api_version="v1", api_key=None, azure_ad_token=AZURE_TOKEN)
    answer = client(gateway_factory(config), sdk).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    path, query, headers, body = fake.seen[-1]
    assert answer.choices[0].message.content and path == "/openai/v1/chat/completions" and not query
    assert headers["authorization"] == f"Bearer {AZURE_TOKEN}" and body["model"] == "prod-gpt4o"


def test_azure_content_filter_is_a_content_policy_error_and_falls_back(
        azure: tuple[FakeAzure, str], anthropic: tuple[FakeAnthropic, str], gateway_factory: Callable[..., str],
        sdk: Any) -> None:
    fake, url = azure
    fake.filtered = True
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway_factory(azure_config(url)), sdk).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "something bad"}])
    assert caught.value.code == "content_policy_violation" and "content management policy" in str(caught.value)
    config = azure_config(url)
    config["model_list"].append({"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-5", "api_base": anthropic[1], "api_key": ANTHROPIC_KEY}})
    config["router_settings"] = {"content_policy_fallbacks": [{"gpt-4o": ["claude"]}]}
    answer = client(gateway_factory(config), sdk).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "something bad"}])
    assert answer.choices[0].message.content == "Hello from claude"


# --- Anthropic ---------------------------------------------------------------------------------------------------

def anthropic_config(url: str) -> dict[str, Any]:
    return {"model_list": [{"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-5", "api_base": url, "api_key": ANTHROPIC_KEY}}], **MASTER}


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}


def test_anthropic_chat_is_translated_both_ways(anthropic: tuple[FakeAnthropic, str],
                                                gateway_factory: Callable[..., str], sdk: Any) -> None:
    fake, url = anthropic
    image = "data:image/png;base64,iVBORw0KGgo="
    answer = client(gateway_factory(anthropic_config(url)), sdk).chat.completions.create(
        model="claude", temperature=0.2, stop="END", user="u-1", messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": image}}]}])
    sent = fake.seen[-1]
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 4096 and sent["model"] == "claude-sonnet-4-5"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert (sent["temperature"], sent["stop_sequences"], sent["metadata"]) == (0.2, ["END"], {"user_id": "u-1"})
    assert answer.choices[0].message.content == "Hello from claude" and answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (16, 6, 22)
    assert answer.usage.prompt_tokens_details.cached_tokens == 4  # type: ignore[union-attr]


def test_anthropic_tools_both_directions(anthropic: tuple[FakeAnthropic, str], gateway_factory: Callable[..., str],
                                         sdk: Any) -> None:
    fake, url = anthropic
    c = client(gateway_factory(anthropic_config(url)), sdk)
    asked = [{"role": "user", "content": "What's the weather in Paris?"}]
    answer = c.chat.completions.create(model="claude", messages=asked, tools=[WEATHER_TOOL], tool_choice="required")
    assert fake.seen[-1]["tool_choice"] == {"type": "any"}
    assert fake.seen[-1]["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    follow = [*asked, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
              {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    c.chat.completions.create(model="claude", messages=follow, tools=[WEATHER_TOOL],
                              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    sent = fake.seen[-1]
    assert sent["messages"][1]["content"] == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                               "input": {"city": "Paris"}}]
    assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_01",
                                               "content": "18 C and sunny"}]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_anthropic_streams_become_chunks(anthropic: tuple[FakeAnthropic, str], gateway_factory: Callable[..., str],
                                         sdk: Any) -> None:
    c = client(gateway_factory(anthropic_config(anthropic[1])), sdk)
    chunks = list(c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello from claude"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 40  # 25 in, 15 out
    calls = list(c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "weather?"}],
                                           tools=[WEATHER_TOOL], stream=True))
    arguments = "".join(ch.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index,union-attr]
                        for ch in calls if ch.choices and ch.choices[0].delta.tool_calls)
    assert json.loads(arguments) == {"city": "Paris"} and not any(ch.usage for ch in calls)


def test_anthropic_errors_in_openai_shape(anthropic: tuple[FakeAnthropic, str],
                                          gateway_factory: Callable[..., str], sdk: Any) -> None:
    fake, url = anthropic
    c = client(gateway_factory(anthropic_config(url)), sdk)
    fake.mode = "overloaded"
    with pytest.raises(openai.InternalServerError) as overloaded:
        c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert overloaded.value.status_code == 503 and overloaded.value.code == "overloaded_error"
    fake.mode = "rate"
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert limited.value.response.headers["retry-after"] == "7"
    fake.mode = "ok"
    with pytest.raises(openai.BadRequestError) as refused:
        c.chat.completions.create(model="claude", messages=[{"role": "assistant", "content": "I start"}])
    assert "alternate" in str(refused.value) and ANTHROPIC_KEY not in str(refused.value)


def test_anthropic_overload_falls_back(anthropic: tuple[FakeAnthropic, str], upstream: tuple[Recorder, str],
                                      gateway_factory: Callable[..., str], sdk: Any) -> None:
    anthropic[0].mode = "overloaded"
    config = anthropic_config(anthropic[1])
    config["model_list"].append({"model_name": "backup", "litellm_params": {"model": "openai/echo",
                                                                            "api_base": upstream[1] + "/v1"}})
    config["router_settings"] = {"fallbacks": [{"claude": ["backup"]}]}
    answer = client(gateway_factory(config), sdk).chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert answer.headers["x-asgi-llm-model-group"] == "backup" and answer.parse().choices[0].message.content


def test_an_anthropic_stream_stops_when_the_client_leaves(anthropic: tuple[FakeAnthropic, str],
                                                          gateway_factory: Callable[..., str]) -> None:
    fake, url = anthropic
    fake.mode = "slow"
    base = gateway_factory(anthropic_config(url))
    with httpx.Client(timeout=10) as http, http.stream(
            "POST", base + "/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "claude", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}) as held:
        reads = held.iter_bytes()
        assert b"chat.completion.chunk" in next(reads)
    deadline = time.monotonic() + 5
    while not fake.gone and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.gone == 1


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=30), tool=st.booleans(),
       crlf=st.booleans())
def test_anthropic_stream_translation_ignores_byte_boundaries(cuts: list[int], tool: bool, crlf: bool) -> None:
    lf = b"".join(stream_events("claude-x", tool, extra=3))
    raw = lf.replace(b"\n", b"\r\n") if crlf else lf  # CR line ends take the general decoder

    def translate(pieces: list[bytes]) -> bytes:
        stream = AnthropicStream("claude-x", include_usage=True, created=1)
        return b"".join(stream.feed(p) for p in pieces) + stream.flush()

    points = sorted({c % len(raw) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert translate(pieces) == translate([lf])


class SeesOpenAI(CustomLogger):
    """A post-call hook and a logging callback, as written for OpenAI's shapes."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        response.choices[0].message.content = response.choices[0].message.content.upper()
        return response

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.logged.append({"usage": response_obj["usage"], "cost": kwargs["response_cost"]})


def test_hooks_and_logging_see_openai_shapes_from_anthropic(anthropic: tuple[FakeAnthropic, str],
                                                            gateway_factory: Callable[..., str], sdk: Any) -> None:
    spy = SeesOpenAI()
    config = anthropic_config(anthropic[1])
    config["model_list"][0]["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    c = client(gateway_factory(config, callbacks=[spy]), sdk)
    answer = c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "HELLO FROM CLAUDE"
    list(c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}], stream=True))
    deadline = time.monotonic() + 5
    while len(spy.logged) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spy.logged[0]["usage"]["total_tokens"] == 22 and spy.logged[0]["cost"] == pytest.approx(0.028)
    assert spy.logged[1]["usage"]["total_tokens"] == 40  # the stream's, from its events, never shown to the client
