"""The text a streamed chunk adds, for chat (``delta.content``) and text completions (``text``)."""

from __future__ import annotations

from typing import Any

import msgspec


class _Delta(msgspec.Struct):
    content: Any = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: Any = None


class _TextView(msgspec.Struct):
    """Just the text a chunk adds: decoding into it skips everything else in the chunk."""

    choices: list[_Choice] = []


_text_view = msgspec.json.Decoder(_TextView).decode


def raw_chunk_text(data: bytes) -> str:
    """The text a serialized chunk adds, decoding only the fields that carry it."""
    try:
        choices = _text_view(data).choices
    except msgspec.DecodeError:  # valid JSON of another shape: no text
        return ""
    if not choices:
        return ""
    value = choices[0].delta.content if choices[0].delta is not None else choices[0].text
    return value if isinstance(value, str) else ""


def chunk_text(chunk: Any) -> str:
    """The text a chat or text-completion chunk adds."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return ""
    first = choices[0]
    delta = first.get("delta")
    value = delta.get("content") if isinstance(delta, dict) else first.get("text")
    return value if isinstance(value, str) else ""
