"""Fixtures: a recording upstream and gateways on real sockets, all on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from asgi_llm import parse_config
from asgi_llm.gateway import Gateway
from tests.redis_server import RedisServer
from tests.servers import Recorder, ServerThread

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture(scope="session")
def recorder_server() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    with ServerThread(recorder) as server:
        yield recorder, server.url


@pytest.fixture
def upstream(recorder_server: tuple[Recorder, str]) -> Iterator[tuple[Recorder, str]]:
    recorder, url = recorder_server
    recorder.requests.clear()
    recorder.attempts.clear()
    recorder.closed.clear()
    recorder.fail_first = 2
    recorder.firehose_sent = 0
    recorder.most_active = 0
    yield recorder, url


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """The session's redis-server, empty, running (a test may have stopped or paused it)."""
    if redis_session.proc is None:
        redis_session.start()
    else:
        redis_session.resume()
    redis_session.client.flushall()
    redis_session.fresh_window()
    return redis_session


def deployment(name: str, api_base: str, upstream_model: str | None = None, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"openai/{upstream_model or name}",
                                                   "api_base": api_base, "api_key": UPSTREAM_KEY, **params}}


def make_config(api_base: str, models: list[str] | None = None, **general: Any) -> dict[str, Any]:
    names = models or ["echo", "slow", "slow-stream", "flaky", "busy", "bad-request", "text-500", "not-json",
                       "cut-stream", "firehose", "whisper", "slow-whisper"]
    model_list = [deployment(n, api_base + "/v1") for n in names]
    model_list.append({"model_name": "mock-model", "litellm_params": {"model": "mock/mock-model"}})
    return {"model_list": model_list, "general_settings": general}


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., str]]:
    """Start a gateway for a config mapping; returns its base URL. Stopped after the test."""
    with ExitStack() as stack:
        def start(config: dict[str, Any], **kwargs: Any) -> str:
            app = Gateway(parse_config(config), **kwargs)
            return stack.enter_context(ServerThread(app)).url

        yield start


@pytest.fixture
def gateway(upstream: tuple[Recorder, str], gateway_factory: Callable[..., str]) -> str:
    return gateway_factory(make_config(upstream[1]))


@pytest.fixture
def sdk() -> Iterator[Callable[..., Any]]:
    """openai.OpenAI clients for a gateway URL, closed after the test."""
    import openai

    made: list[openai.OpenAI] = []

    def make(base: str, key: str = "sk-client-key", path: str = "/v1") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base + path, api_key=key, max_retries=0, timeout=10))
        return made[-1]

    yield make
    for c in made:
        c.close()
