"""Every malformed request gets a 4xx OpenAI-shaped error naming the field, and the
gateway keeps serving. Driven over a socket with raw httpx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import make_config
from tests.servers import Recorder

GOOD = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json"}

CASES: list[tuple[str, bytes, dict[str, str], int, str | None]] = [
    ("invalid json", b'{"model": "echo",', JSON, 400, None),
    ("empty body", b"", JSON, 400, None),
    ("array", b"[1, 2]", JSON, 400, None),
    ("number", b"42", JSON, 400, None),
    ("form content type", b"model=echo", {"content-type": "application/x-www-form-urlencoded"}, 415, None),
    ("text content type", b'{"model":"echo"}', {"content-type": "text/plain"}, 415, None),
    ("missing model", b'{"messages": [{"role": "user", "content": "x"}]}', JSON, 400, "model"),
    ("model not a string", b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', JSON, 400, "model"),
    ("messages missing", b'{"model": "echo"}', JSON, 400, "messages"),
    ("messages empty", b'{"model": "echo", "messages": []}', JSON, 400, "messages"),
    ("messages not a list", b'{"model": "echo", "messages": "hi"}', JSON, 400, "messages"),
    ("bad role", b'{"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}', JSON, 400,
     "messages[0].role"),
    ("no role", b'{"model": "echo", "messages": [{"content": "x"}]}', JSON, 400, "messages[0].role"),
    ("content wrong type", b'{"model": "echo", "messages": [{"role": "user", "content": 5}]}', JSON, 400,
     "messages[0].content"),
    ("stream not bool", b'{"model": "echo", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
     JSON, 400, "stream"),
    ("deep nesting", b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "x": '
     + b"[" * 200_000 + b"]" * 200_000 + b"}", JSON, 400, None),
    ("invalid utf-8", b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', JSON, 400, None),
    ("prompt variables an array", b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], '
     b'"prompt_variables": ["x"]}', JSON, 400, "prompt_variables"),
    ("prompt variables a string, with an id", b'{"model": "echo", "prompt_id": "p", "prompt_variables": "x"}',
     JSON, 400, "prompt_variables"),
    ("prompt variables a number, with an id", b'{"model": "echo", "prompt_id": "p", "prompt_variables": 1}',
     JSON, 400, "prompt_variables"),
]


@pytest.mark.parametrize(("name", "body", "headers", "status", "param"), CASES, ids=[c[0] for c in CASES])
def test_bad_request(name: str, body: bytes, headers: dict[str, str], status: int, param: str | None,
                     gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    resp = httpx.post(gateway + "/v1/chat/completions", content=body, headers=headers, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    assert recorder.requests == []  # nothing reached the upstream
    assert httpx.post(gateway + "/v1/chat/completions", json=GOOD, timeout=10).status_code == 200


def test_completions_and_embeddings_validate_their_fields(gateway: str) -> None:
    resp = httpx.post(gateway + "/v1/embeddings", json={"model": "echo"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input"
    resp = httpx.post(gateway + "/v1/completions", json={"model": "echo", "prompt": 3}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_body_is_413_and_read_stops(chunked: bool, upstream: tuple[Recorder, str],
                                             gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(make_config(upstream[1], max_request_size_mb=0.01))  # ~10 KiB
    big = b'{"model": "echo", "messages": [{"role": "user", "content": "' + b"a" * 200_000 + b'"}]}'
    content: Any = iter([big[i:i + 4096] for i in range(0, len(big), 4096)]) if chunked else big
    resp = httpx.post(base + "/v1/chat/completions", content=content, headers=JSON, timeout=10)
    assert resp.status_code == 413 and "max_request_size_mb" in resp.json()["error"]["message"]
    assert httpx.post(base + "/v1/chat/completions", json=GOOD, timeout=10).status_code == 200


def test_unknown_route_and_wrong_method(gateway: str) -> None:
    resp = httpx.get(gateway + "/v1/nothing-here", timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
    assert httpx.post(gateway + "/v1/models", timeout=10).status_code == 405


def test_unknown_fields_survive_to_the_upstream(gateway: str, upstream: tuple[Recorder, str]) -> None:
    recorder, _ = upstream
    body = {**GOOD, "response_format": {"type": "json_object"}, "tools": [{"type": "function"}], "n": 2,
            "logit_bias": {"50256": -100}, "text": "\u2028 line sep"}
    assert httpx.post(gateway + "/v1/chat/completions", json=body, timeout=10).status_code == 200
    assert recorder.requests[-1]["body"] == body
