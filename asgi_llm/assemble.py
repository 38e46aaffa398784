"""Assemble a streamed answer, chunk by chunk, into one complete response.

``StreamAssembler.add(chunk)`` takes each parsed ``chat.completion.chunk`` (or
``text_completion`` chunk) as it is served; ``result()`` gives the
``chat.completion`` (or ``text_completion``) the chunks add up to: content
concatenated per choice, tool-call deltas merged by their ``index`` (id, type and
name kept from the first delta that has them, ``arguments`` concatenated), the
last ``finish_reason``, and ``usage`` from the chunk that carried it. Logging
hands this to success callbacks as ``complete_streaming_response``.
"""

from __future__ import annotations

from typing import Any


class _Choice:
    __slots__ = ("content", "finish_reason", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class StreamAssembler:
    """Collects served chunks; see the module docstring."""

    def __init__(self) -> None:
        self.base: dict[str, Any] = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None
        self.text_completion = False

    def add(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self.base:
                self.base[key] = chunk[key]
        if chunk.get("object") == "text_completion":
            self.text_completion = True
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for raw in chunk.get("choices") or ():
            if isinstance(raw, dict):
                self._add_choice(raw)

    def _add_choice(self, raw: dict[str, Any]) -> None:
        choice = self.choices.setdefault(raw.get("index", 0), _Choice())
        if raw.get("finish_reason"):
            choice.finish_reason = raw["finish_reason"]
        if isinstance(raw.get("text"), str):
            choice.content.append(raw["text"])
        delta = raw.get("delta")
        if not isinstance(delta, dict):
            return
        choice.role = choice.role or delta.get("role")
        if isinstance(delta.get("content"), str):
            choice.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            choice.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._add_tool_call(choice, call)

    @staticmethod
    def _add_tool_call(choice: _Choice, call: dict[str, Any]) -> None:
        merged = choice.tool_calls.setdefault(call.get("index", len(choice.tool_calls)),
                                              {"id": None, "type": "function",
                                               "function": {"name": None, "arguments": ""}})
        if call.get("id"):
            merged["id"] = merged["id"] or call["id"]
        if call.get("type"):
            merged["type"] = call["type"]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                merged["function"]["name"] = merged["function"]["name"] or function["name"]
            if isinstance(function.get("arguments"), str):
                merged["function"]["arguments"] += function["arguments"]

    def result(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            c = self.choices[index]
            text = "".join(c.content)
            if self.text_completion:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": c.finish_reason})
                continue
            message: dict[str, Any] = {"role": c.role or "assistant", "content": text if c.content else None}
            if c.refusal:
                message["refusal"] = "".join(c.refusal)
            if c.tool_calls:
                message["tool_calls"] = [c.tool_calls[i] for i in sorted(c.tool_calls)]
            choices.append({"index": index, "message": message, "finish_reason": c.finish_reason})
        kind = "text_completion" if self.text_completion else "chat.completion"
        return {**self.base, "object": kind, "choices": choices, "usage": self.usage}
