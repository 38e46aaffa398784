"""LiteLLM hook files with only their imports changed: its response type names, ``acompletion`` for
LLM-judge guardrails, and its hook order (pre-call hooks before prompt management)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_llm import (
    Choices,
    CustomLogger,
    DualCache,
    EmbeddingResponse,
    GatewayError,
    Message,
    ModelResponse,
    ModelResponseStream,
    TextCompletionResponse,
    Usage,
    UserAPIKeyAuth,
    acompletion,
    aembedding,
    atext_completion,
)
from tests.conftest import deployment
from tests.servers import Recorder

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_constructors_follow_litellms_defaults() -> None:
    reply = ModelResponse(choices=[Choices(message=Message(content="No."))], usage=Usage(prompt_tokens=3,
                                                                                          completion_tokens=2))
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply["usage"]["total_tokens"] == 5 and isinstance(reply.usage, Usage)
    assert isinstance(reply.choices[0], Choices) and isinstance(reply.choices[0].message, Message)
    assert ModelResponseStream().object == "chat.completion.chunk"
    assert TextCompletionResponse().choices[0].text == "" and EmbeddingResponse().data == []
    assert ModelResponse({"object": "chat.completion"}) == {"object": "chat.completion"}  # a view of given data


class Judge(CustomLogger):
    """An LLM-judge guardrail as written for LiteLLM: it asks another model before every call."""

    def __init__(self) -> None:
        self.calls = 0

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> Any:
        self.calls += 1
        verdict = await acompletion(model="judge", messages=[{"role": "user", "content": str(data["messages"])}])
        assert isinstance(verdict, ModelResponse)
        if verdict.choices[0].message.content != "SAFE":
            return "Refused by the judge."
        streamed = [c async for c in await acompletion(model="judge", messages=data["messages"], stream=True)]
        assert all(isinstance(c, ModelResponseStream) for c in streamed)
        data["metadata"]["judged"] = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        vectors = await aembedding(model="embed", input=["a", "b"])
        assert isinstance(vectors, EmbeddingResponse) and len(vectors.data) == 2
        text = await atext_completion(model="judge", prompt="x")
        assert isinstance(text, TextCompletionResponse)
        with pytest.raises(GatewayError) as unknown:
            await acompletion(model="not-configured", messages=data["messages"])
        assert unknown.value.status_code == 404
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        assert isinstance(response, ModelResponse) and isinstance(response.choices[0], Choices)
        return ModelResponse(choices=[Choices(message=Message(content=f"judged: {data['metadata']['judged']}"))])


@pytest.mark.parametrize("verdict", ["SAFE", "UNSAFE"])
def test_a_hook_consults_a_model_without_reentering_hooks(verdict: str, upstream: tuple[Recorder, str],
                                                          gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    judge = Judge()
    config = {"model_list": [deployment("echo", url + "/v1"),
                             {"model_name": "judge", "litellm_params": {"model": "mock/judge",
                                                                        "mock_response": verdict}},
                             {"model_name": "embed", "litellm_params": {"model": "mock/embed"}}],
              "general_settings": {"master_key": "sk-master-key"}}
    base = gateway_factory(config, callbacks=[judge])
    resp = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "echo"}, timeout=10,
                      headers={"authorization": "Bearer sk-master-key"})
    assert resp.status_code == 200 and judge.calls == 1  # the judge's own calls ran no hook
    content = resp.json()["choices"][0]["message"]["content"]
    if verdict == "SAFE":
        assert content == "judged: SAFE" and len(recorder.requests) == 1
    else:
        assert content == "Refused by the judge." and recorder.requests == []


class SetsPromptVariables(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> Any:
        assert data["prompt_id"] == "greet"  # the hook sees the prompt fields, before any rendering
        data["prompt_variables"] = {"name": "from the hook"}
        return data


def test_pre_call_hooks_run_before_prompt_management(tmp_path: Path, upstream: tuple[Recorder, str],
                                                     gateway_factory: Callable[..., str]) -> None:
    recorder, url = upstream
    (tmp_path / "greet.yaml").write_text("id: greet\nversions:\n  - version: 1\n    template: 'Hello {{name}}'\n"
                                         "    variables: {name: {type: string}}\n")
    config = {"model_list": [deployment("echo", url + "/v1")], "prompts": {"path": str(tmp_path)}}
    base = gateway_factory(config, callbacks=[SetsPromptVariables()])
    resp = httpx.post(base + "/v1/chat/completions", timeout=10,
                      json={"model": "echo", "prompt_id": "greet", "prompt_variables": {"name": "client"}})
    assert resp.status_code == 200, resp.text
    assert recorder.requests[-1]["body"]["messages"] == [{"role": "user", "content": "Hello from the hook"}]
