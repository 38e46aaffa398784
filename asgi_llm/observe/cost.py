"""Cost: LiteLLM's per-token prices from ``model_info``, token counts, and estimates.

A deployment's ``model_info.input_cost_per_token`` and ``output_cost_per_token``
(LiteLLM's names, in dollars) price a call: prompt tokens times the input price
plus completion tokens times the output price. Tokens come from the answer's
``usage``. Without one they are estimated from the text at 4 characters per token
(OpenAI's rule of thumb for English; no tokenizer is bundled, as tokenizers are
model-specific and need downloads), and the logging object says
``usage_estimated: true``.

``completion_cost`` is LiteLLM's function of that name for callback files (seed
003): priced from a response, or from ``model`` + ``messages`` + ``completion``
text, with the prices the running gateway registered (``register_prices``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from asgi_llm.hooks.custom_logger import get_formatted_prompt
from asgi_llm.hooks.response import unwrap

Prices = tuple[float, float]  # dollars per input token, per output token
PRICES: dict[str, Prices] = {}  # model name -> prices, for `completion_cost`


def prices_of(model_info: dict[str, Any]) -> Prices | None:
    """A deployment's prices, or None when its ``model_info`` names none."""
    found_in, found_out = model_info.get("input_cost_per_token"), model_info.get("output_cost_per_token")
    if found_in is None and found_out is None:
        return None
    return float(found_in or 0.0), float(found_out or 0.0)


def register_prices(names: Iterable[str], prices: Prices) -> None:
    for name in names:
        if name:
            PRICES[name] = prices


def estimate_tokens(text: str) -> int:
    """About 4 characters per token, rounded up; 0 for no text."""
    return (len(text) + 3) // 4


class _Reply(msgspec.Struct):
    """A JSON reply seen only for its ``usage``: decoding it checks the whole text is valid JSON
    without building the rest (unknown fields are skipped, not allocated)."""

    usage: Any = None


_reply = msgspec.json.Decoder(_Reply).decode
_decode = msgspec.json.decode


def reply_usage(data: bytes) -> Any:
    """Check that ``data`` is JSON (raising msgspec's errors or ``UnicodeDecodeError`` when not) and
    give its ``usage``, if any: one pass over the text, about half the cost of a full decode."""
    if data.isascii():  # no string in it can be invalid UTF-8, which the typed view does not check
        try:
            return _reply(data).usage
        except msgspec.ValidationError:  # not an object (it stops at the first byte): checked in full below
            pass
    found = _decode(data)
    return found.get("usage") if isinstance(found, dict) else None


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    """``(prompt, completion)`` from an OpenAI ``usage`` object (or LiteLLM's input/output names)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def response_text(response: Any) -> str:
    """The generated text of a chat/text completion (all choices, tool-call arguments included)."""
    parts: list[str] = []
    choices = response.get("choices") if isinstance(response, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        for text in (choice.get("text"), message.get("content") if isinstance(message, dict) else None):
            if isinstance(text, str):
                parts.append(text)
        for call in (message.get("tool_calls") or ()) if isinstance(message, dict) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                parts.append(function["arguments"])
    return "".join(parts)


def cost_of(prices: Prices | None, prompt: int, completion: int) -> float | None:
    return None if prices is None else prompt * prices[0] + completion * prices[1]


def _lookup(model: str | None) -> Prices:
    if model is not None:
        for name in (model, model.partition("/")[2]):
            if name in PRICES:
                return PRICES[name]
    raise ValueError(f"no prices for model {model!r}: set model_info.input_cost_per_token and "
                     "output_cost_per_token for it in the config")


def completion_cost(completion_response: Any = None, model: str | None = None, messages: Any = None,
                    completion: str = "", prompt: str = "", call_type: str = "completion") -> float:
    """LiteLLM's ``completion_cost``: the dollar cost of a response, or of ``messages`` + ``completion``.

    Tokens come from the response's ``usage`` when it has one, else are estimated
    from the text. Raises ``ValueError`` for a model without configured prices.
    """
    if completion_response is not None:
        response = unwrap(completion_response)
        response = response if isinstance(response, dict) else {}
        found = usage_tokens(response.get("usage"))
        model = model or response.get("model")
        if found is None:
            found = (estimate_tokens(prompt), estimate_tokens(response_text(response)))
    else:
        text = prompt or get_formatted_prompt({"messages": messages or []}, call_type)
        found = (estimate_tokens(text), estimate_tokens(completion))
    return cost_of(_lookup(model), *found) or 0.0
