"""Streamed chunks assemble into the complete response they add up to."""

from __future__ import annotations

from asgi_llm.sse.assemble import StreamAssembler


def chunk(delta: dict[str, object], finish: str | None = None, index: int = 0) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_content_tool_calls_finish_and_usage() -> None:
    a = StreamAssembler()
    a.add(chunk({"role": "assistant", "content": ""}))
    a.add(chunk({"content": "Hel"}))
    a.add(chunk({"content": "lo"}))
    a.add(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": "{\"ci"}}]}))
    a.add(chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "now", "arguments": ""}}]}))
    a.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Oslo\"}"}}]}))
    a.add(chunk({}, "tool_calls"))
    a.add({"id": "c1", "object": "chat.completion.chunk", "choices": [],
           "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    result = a.result()
    assert result["object"] == "chat.completion" and result["id"] == "c1" and result["model"] == "m"
    message = result["choices"][0]["message"]
    assert message["content"] == "Hello" and message["role"] == "assistant"
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]
    assert result["choices"][0]["finish_reason"] == "tool_calls" and result["usage"]["total_tokens"] == 7


def test_several_choices_and_text_completions() -> None:
    a = StreamAssembler()
    a.add(chunk({"content": "a"}, index=1))
    a.add(chunk({"content": "b"}, index=0))
    a.add(chunk({}, "stop", index=0))
    assert [c["message"]["content"] for c in a.result()["choices"]] == ["b", "a"]
    t = StreamAssembler()
    for piece in ("once ", "upon"):
        t.add({"id": "t", "object": "text_completion", "choices": [{"index": 0, "text": piece, "finish_reason": None}]})
    t.add({"id": "t", "object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    done = t.result()
    assert done["object"] == "text_completion" and done["choices"][0] == {
        "index": 0, "text": "once upon", "logprobs": None, "finish_reason": "length"}
