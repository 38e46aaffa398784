"""The real openai SDK against the gateway over a socket, upstream a real HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.servers import Recorder

Sdk = Callable[..., Any]


def test_chat_is_forwarded_and_answered(sdk: Sdk, gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    reply = sdk(gateway).chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping"}])
    assert reply.choices[0].message.content == "echo: ping"
    assert reply.usage is not None and reply.usage.total_tokens == 5
    sent = recorder.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {"model": "echo", "messages": [{"role": "user", "content": "ping"}]}
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_streaming_chat(sdk: Sdk, gateway: str) -> None:
    stream = sdk(gateway).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from upstream"


def test_completions_embeddings_models_on_mock(sdk: Sdk, gateway: str) -> None:
    c = sdk(gateway)
    done = c.completions.create(model="mock-model", prompt="say hi")
    assert done.object == "text_completion" and done.choices[0].text.endswith("You said: say hi")
    streamed = "".join(x.choices[0].text for x in c.completions.create(model="mock-model", prompt="a b", stream=True))
    assert streamed == done.choices[0].text.replace("say hi", "a b")
    emb = c.embeddings.create(model="mock-model", input=["one", "two"])
    assert [e.index for e in emb.data] == [0, 1] and len(emb.data[0].embedding) == 16
    assert emb.data[0].embedding == c.embeddings.create(model="mock-model", input="one").data[0].embedding
    assert "echo" in {m.id for m in c.models.list()}


def test_mock_chat_streams_by_words_and_honours_mock_response(sdk: Sdk, gateway_factory: object) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m",
                                                                   "mock_response": "one two three"}}]}
    base = gateway_factory(config)  # type: ignore[operator]
    c = sdk(base)
    chunks = [x.choices[0].delta.content for x in c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True) if x.choices]
    assert [x for x in chunks if x] == ["one ", "two ", "three"]
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]
                                     ).choices[0].message.content == "one two three"


def test_embeddings_forwarded(sdk: Sdk, gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    result = sdk(gateway).embeddings.create(model="echo", input="x")
    assert result.data[0].embedding == [0.5, -0.5]
    assert recorder.requests[-1]["path"] == "/v1/embeddings"
    assert recorder.requests[-1]["body"]["input"] == "x"


def test_unknown_model_names_it_and_the_choices(sdk: Sdk, gateway: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gateway).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == "model" and "'gpt-9'" in error["message"] and "echo" in error["message"]


def test_upstream_errors_pass_through(sdk: Sdk, gateway: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gateway).chat.completions.create(model="bad-request", messages=[{"role": "user", "content": "x"}])
    assert info.value.body == {"message": "bad things", "type": "invalid_request_error", "param": "temperature",
                               "code": None}
    with pytest.raises(openai.InternalServerError) as failed:
        sdk(gateway).chat.completions.create(model="text-500", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 500 and "kaboom" in str(failed.value)


def test_completions_forwarded_to_upstream(sdk: Sdk, gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    done = sdk(gateway).completions.create(model="echo", prompt="once upon", max_tokens=5)
    assert done.choices[0].text == "upstream text"
    assert recorder.requests[-1]["path"] == "/v1/completions"
    assert recorder.requests[-1]["body"] == {"model": "echo", "prompt": "once upon", "max_tokens": 5}
