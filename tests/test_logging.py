"""Logging callbacks (seed 003) over real sockets: events, kwargs, off-path delivery."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import logging_callbacks as cb
from tests.conftest import UPSTREAM_KEY, make_config
from tests.servers import CLIServer, Recorder

Upstream = tuple[Recorder, str]
PRICED = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.01}


@pytest.fixture(autouse=True)
def clean_events() -> Iterator[None]:
    cb.EVENTS.clear()
    yield
    cb.EVENTS.clear()


def config(upstream: Upstream, callbacks: list[str] | None = None, **settings: Any) -> dict[str, Any]:
    made = make_config(upstream[1], ["echo", "bad-request", "no-usage", "slow"])
    for entry in made["model_list"]:
        entry["model_info"] = dict(PRICED)
    made["litellm_settings"] = {"callbacks": callbacks or [], **settings}
    return made


def chat(base: str, model: str = "echo", stream: bool = False, key: str = "sk-client-key",
         **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}], "stream": stream, **extra}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=10)


def test_sync_class_gets_pre_post_stream_and_success_events(upstream: Upstream,
                                                            gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, ["tests.logging_callbacks.sync_handler"]))
    assert chat(base).status_code == 200
    (_, _, kwargs, response), = cb.wait_for("sync", "success")
    assert [e[1] for e in cb.events("sync")] == ["pre", "post", "success"]
    assert response.choices[0].message.content == "echo: hi there"  # attribute access
    assert response["usage"]["total_tokens"] == 5  # and key access
    assert kwargs["log_event_type"] == "successful_api_call" and kwargs["stream"] is False
    assert isinstance(kwargs["start_time"], datetime) and kwargs["end_time"] >= kwargs["start_time"]

    cb.EVENTS.clear()
    streamed = chat(base, stream=True)
    assert streamed.status_code == 200
    (_, _, kwargs, response), = cb.wait_for("sync", "success")
    kinds = [e[1] for e in cb.events("sync")]
    assert kinds == ["pre", "stream", "stream", "stream", "post", "success"]  # in order, for each call
    assert kwargs["complete_streaming_response"]["choices"][0]["message"]["content"] == "Hello from upstream"
    assert response.choices[0].message.content == "Hello from upstream"
    assert [e[3].choices[0].delta.content for e in cb.events("sync", "stream")] == ["Hello", " from", " upstream"]
    assert kwargs["standard_logging_object"]["completion_tokens"] == 3  # from the stream's usage chunk


def test_a_class_with_both_twins_gets_only_the_async_one_once(upstream: Upstream,
                                                              gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, ["tests.logging_callbacks.both_twins"]))
    assert chat(base).status_code == 200
    assert chat(base, "bad-request").status_code == 400
    cb.wait_for("twins", "success")
    cb.wait_for("twins", "failure")
    time.sleep(0.2)  # anything doubled would have arrived by now
    assert sorted(e[1] for e in cb.events("twins")) == ["failure", "success"]


def test_failure_event_carries_the_exception_and_traceback(upstream: Upstream,
                                                          gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, ["tests.logging_callbacks.sync_handler"],
                                  failure_callback=["tests.logging_callbacks.on_failure"]))
    assert chat(base, "bad-request").status_code == 400
    (_, _, kwargs, response), = cb.wait_for("sync", "failure")
    assert response is None and not cb.events("sync", "success")
    assert kwargs["log_event_type"] == "failed_api_call"
    assert "bad things" in str(kwargs["exception"]) and "GatewayError" in kwargs["traceback_exception"]
    summary = kwargs["standard_logging_object"]
    assert summary["status"] == "failure" and summary["status_code"] == 400
    assert summary["error_information"]["error_class"] == "GatewayError"
    assert cb.wait_for("fn", "failure")[0][2]["litellm_call_id"] == kwargs["litellm_call_id"]


def test_plain_functions_sync_and_async_and_input_callback(upstream: Upstream,
                                                           gateway_factory: Callable[..., str]) -> None:
    recorder, _ = upstream
    base = gateway_factory(config(upstream, success_callback=["tests.logging_callbacks.on_success",
                                                              "tests.logging_callbacks.on_success_async"],
                                  input_callback="tests.logging_callbacks.on_input"))
    answer = chat(base, metadata={"hello": "world"}, temperature=0.2)
    assert answer.status_code == 200
    (_, _, kwargs, response), = cb.wait_for("fn", "success")
    assert cb.wait_for("afn", "success")[0][2]["litellm_call_id"] == kwargs["litellm_call_id"]
    assert response["choices"][0]["message"]["content"] == "echo: hi there"
    (_, _, inputs, _), = cb.wait_for("fn", "input")
    sent = recorder.requests[-1]["body"]
    assert inputs["additional_args"]["complete_input_dict"] == sent  # exactly what went upstream
    assert "metadata" not in sent and inputs["log_event_type"] == "pre_api_call"
    assert kwargs["litellm_params"]["metadata"]["hello"] == "world"
    assert kwargs["optional_params"]["temperature"] == 0.2
    assert answer.headers["x-asgi-llm-call-id"] == kwargs["litellm_call_id"]


def test_kwargs_carry_what_seed_003_lists(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    from asgi_llm.hooks.auth import hash_key

    made = config(upstream, ["tests.logging_callbacks.sync_handler",
                             "examples.custom_callbacks.proxy_handler_instance"])
    made["keys"] = [{"key_hash": hash_key("sk-team-key"), "key_alias": "ci", "user_id": "u1", "team_id": "t1"}]
    base = gateway_factory(made)
    answer = chat(base, key="sk-team-key", user="end-user-7", metadata={"trace": "abc"})
    assert answer.status_code == 200
    (_, _, kwargs, _), = cb.wait_for("sync", "success")
    assert kwargs["model"] == "echo" and kwargs["call_type"] == "acompletion"
    # messages after the pre-call hook (seed 004's handler rewrites the request)
    assert kwargs["messages"] == upstream[0].requests[-1]["body"]["messages"]
    meta = kwargs["litellm_params"]["metadata"]
    assert meta["trace"] == "abc" and meta["user_api_key_alias"] == "ci"
    assert meta["user_api_key_user_id"] == "u1" and meta["user_api_key_team_id"] == "t1"
    assert meta["user_api_key_hash"] == hash_key("sk-team-key") and meta["user_api_end_user_id"] == "end-user-7"
    assert kwargs["api_key"] != UPSTREAM_KEY and UPSTREAM_KEY not in repr(kwargs)
    assert "sk-team-key" not in repr(kwargs)
    assert kwargs["input"] == kwargs["additional_args"]["complete_input_dict"]["messages"]
    assert '"content": "echo: ' in kwargs["original_response"] or '"content":"echo: ' in kwargs["original_response"]
    assert kwargs["cache_hit"] is False
    assert kwargs["response_cost"] == pytest.approx(3 * 0.001 + 2 * 0.01)
    summary = kwargs["standard_logging_object"]
    for field in ("id", "status", "model", "model_group", "prompt_tokens", "completion_tokens", "total_tokens",
                  "response_cost", "startTime", "endTime", "response_time", "upstream_time", "overhead_time"):
        assert field in summary, field
    assert summary["status"] == "success" and summary["model_group"] == "echo" and summary["total_tokens"] == 5
    assert summary["error_information"] is None and summary["usage_estimated"] is False


def test_callbacks_never_hold_or_break_a_request(upstream: Upstream, gateway_factory: Callable[..., str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    made = config(upstream, ["tests.logging_callbacks.slow", "tests.logging_callbacks.misbehaving"],
                  success_callback=["tests.logging_callbacks.slow_sync_success"])
    made["general_settings"]["log_callback_timeout"] = 0.5
    base = gateway_factory(made)
    began = time.monotonic()
    assert chat(base).status_code == 200
    assert chat(base, stream=True).status_code == 200
    assert time.monotonic() - began < 0.8  # two calls, while each waits 1 s in a callback
    assert chat(base, "bad-request").status_code == 400  # the hanging failure callback: timed out
    assert not cb.events("slow") and not cb.events("slow-sync")  # the answers came first
    time.sleep(1.3)  # past the 0.5 s timeout: the slow ones were abandoned, the next events still flow
    assert chat(base).status_code == 200
    logged = caplog.text
    assert "Misbehaving.async_log_success_event raised; ignored" in logged
    assert "Misbehaving.async_log_failure_event took longer than 0.5s; abandoned" in logged
    assert "Slow.async_log_success_event took longer than 0.5s" in logged
    assert not cb.events("slow")  # abandoned, never finished


def test_slow_callbacks_still_deliver_within_the_timeout(upstream: Upstream,
                                                         gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, ["tests.logging_callbacks.slow"],
                                  success_callback=["tests.logging_callbacks.slow_sync_success"]))
    began = time.monotonic()
    assert chat(base).status_code == 200
    assert time.monotonic() - began < 0.5
    cb.wait_for("slow", "success")
    cb.wait_for("slow-sync", "success")


def test_client_that_leaves_is_a_failure(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(config(upstream, ["tests.logging_callbacks.both_twins"]))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", timeout=0.3,
                   json={"model": "slow", "messages": [{"role": "user", "content": "x"}]})
    (_, _, kwargs, _), = cb.wait_for("twins", "failure")
    summary = kwargs["standard_logging_object"]
    assert summary["status_code"] == 499 and summary["error_information"]["error_class"] == "ClientDisconnected"


def test_seed_003_examples_run_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from asgi_llm.gateway import create_app
    from tests.servers import ServerThread

    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi i'm openai"}],
            "metadata": {"hello": "world"}}
    with ServerThread(create_app("examples/logging_config.yaml")) as server:
        assert httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10).status_code == 200
        assert httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": True},
                          timeout=10).status_code == 200
    # the server has stopped, and its shutdown delivered every queued event
    out = capsys.readouterr().out
    assert out.count("Pre-API Call") == 2 and out.count("Post-API Call") == 2
    assert out.count("On Async Success") == 2 and "On Success" not in out  # the async twin only
    assert out.count("On Async Streaming") >= 5 and "On Stream\n" not in out
    # cost tracking, both kinds: $0.5/M in, $1.5/M out; the mock counts words
    regular = float(re.search(r"regular response_cost (\S+)", out).group(1))  # type: ignore[union-attr]
    streaming = float(re.search(r"streaming response_cost (\S+)", out).group(1))  # type: ignore[union-attr]
    assert regular == pytest.approx(3 * 0.0000005 + 12 * 0.0000015)
    assert streaming > 0
    # the transformed input: what went to the model, without gateway fields
    sent = re.search(r"params to model (\{.*\})", out).group(1)  # type: ignore[union-attr]
    assert "'model': 'gpt-3.5-turbo'" in sent and "metadata" not in sent
    assert "'hello': 'world'" in out  # the metadata example


def test_queued_events_are_delivered_at_shutdown(tmp_path: Path) -> None:
    (tmp_path / "file_logger.py").write_text(
        "import os, time\n"
        "def log_to_file(kwargs, response, start, end):\n"
        "    time.sleep(0.2)\n"
        "    with open(os.environ['LOG_FILE'], 'a') as f:\n"
        "        f.write(kwargs['litellm_call_id'] + '\\n')\n")
    (tmp_path / "config.yaml").write_text(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n"
        "litellm_settings:\n  success_callback: file_logger.log_to_file\n")
    log_file = tmp_path / "calls.log"
    server = CLIServer(str(tmp_path / "config.yaml"), env={"LOG_FILE": str(log_file)})
    with server:
        ids = [httpx.post(f"{server.url}/v1/chat/completions", timeout=10,
                          json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
                          ).headers["x-asgi-llm-call-id"] for _ in range(12)]
        server.proc.send_signal(signal.SIGTERM)  # 12 events x 0.2 s on 4 threads: most still queued
        assert server.proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean exit
    assert sorted(log_file.read_text().split()) == sorted(ids)


def test_programmatic_registration_and_config_errors(upstream: Upstream) -> None:
    from asgi_llm import ConfigError, parse_config
    from asgi_llm.gateway import Gateway

    seen: list[str] = []
    gateway = Gateway(parse_config(config(upstream)), success_callback=[lambda k, r, s, e: seen.append(k["model"])])
    from tests.servers import ServerThread

    with ServerThread(gateway) as server:
        assert chat(server.url).status_code == 200
    assert seen == ["echo"]  # delivered by the time the server stopped
    for value, message in (("langfuse", "built-in integrations are not included"),
                           ("tests.logging_callbacks.NOT_A_FUNCTION", "is a int, not a function"),
                           ("tests.nowhere.fn", "cannot import 'tests.nowhere'")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            Gateway(parse_config(config(upstream, success_callback=[value])))


def test_a_logged_call_leaves_no_reference_cycle() -> None:
    """Each call's record must be freed by reference counting: a cycle per call (the record in the
    scope's state, the scope in the record; an event's lambda on the record) would leave every
    request to the cyclic GC."""
    import asyncio
    import gc

    from asgi_llm import CustomLogger, parse_config
    from asgi_llm.gateway import Gateway
    from asgi_llm.observe.record import CallRecord

    class Counting(CustomLogger):  # keeps nothing of what it is given
        events = 0

        async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            Counting.events += 1

        async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                          end_time: Any) -> None:
            Counting.events += 1

    raw = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
           "general_settings": {"metrics": True}}
    gateway = Gateway(parse_config(raw), callbacks=[Counting()])

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            codes = [(await client.post("/v1/chat/completions", json={
                "model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})).status_code
                for stream in (False, True)]
        await gateway.log_queue.drain(5)
        return codes

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert asyncio.run(calls()) == [200, 200]
        assert Counting.events == 4  # pre and success, twice: the records were used
        gc.collect()
        assert [o for o in gc.garbage if isinstance(o, CallRecord)] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
