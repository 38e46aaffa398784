"""Cost, usage, response headers and /metrics, over real sockets; the log queue's limits."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_llm import GatewayMetrics
from asgi_llm.observe.cost import completion_cost, register_prices, reply_usage
from asgi_llm.observe.queue import LogQueue
from asgi_llm.observe.sinks import Sink
from asgi_llm.upstream.trace import UpstreamTrace
from asgi_llm.upstream.usage_tap import UsageTap
from tests import logging_callbacks as cb
from tests.conftest import make_config
from tests.servers import STREAM_USAGE, CLIServer, Recorder

Upstream = tuple[Recorder, str]
IN, OUT = 0.001, 0.01


@pytest.fixture(autouse=True)
def clean_events() -> Iterator[None]:
    cb.EVENTS.clear()
    yield
    cb.EVENTS.clear()


def priced(upstream: Upstream, **general: Any) -> dict[str, Any]:
    made = make_config(upstream[1], ["echo", "bad-request", "no-usage", "slow-stream"], **general)
    for entry in made["model_list"]:
        if entry["model_name"] != "slow-stream":
            entry["model_info"] = {"input_cost_per_token": IN, "output_cost_per_token": OUT}
    return made


def post(base: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=10)


def ask(model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi there"}], **extra}


def events_of(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_cost_and_call_headers_on_a_plain_answer(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(priced(upstream))
    first, second = post(base, ask()), post(base, ask())
    assert first.status_code == 200
    assert float(first.headers["x-asgi-llm-response-cost"]) == pytest.approx(3 * IN + 2 * OUT)  # usage 3 + 2
    assert float(first.headers["x-asgi-llm-overhead-ms"]) >= 0
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-asgi-llm-call-id"])
    assert first.headers["x-asgi-llm-call-id"] != second.headers["x-asgi-llm-call-id"]
    assert int(first.headers["content-length"]) == len(first.content)
    error = post(base, ask("bad-request"))  # errors carry the id too, never a cost
    assert error.status_code == 400 and "x-asgi-llm-call-id" in error.headers
    assert "x-asgi-llm-response-cost" not in error.headers


def test_streams_ask_for_usage_and_hide_it_unless_asked(upstream: Upstream,
                                                        gateway_factory: Callable[..., str]) -> None:
    recorder, _ = upstream
    made = priced(upstream)
    made["litellm_settings"] = {"success_callback": "tests.logging_callbacks.on_success"}
    base = gateway_factory(made)
    answer = post(base, ask(stream=True))
    sent = recorder.requests[-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}  # asked upstream
    chunks = events_of(answer.text)
    assert all(c["choices"] for c in chunks) and answer.text.endswith("data: [DONE]\n\n")  # usage chunk gone
    assert "x-asgi-llm-call-id" in answer.headers and "x-asgi-llm-response-cost" not in answer.headers
    (_, _, kwargs, _), = cb.wait_for("fn", "success")
    assert kwargs["response_cost"] == pytest.approx(STREAM_USAGE["prompt_tokens"] * IN
                                                    + STREAM_USAGE["completion_tokens"] * OUT)
    # the client was served no usage chunk, yet callbacks see the upstream's usage in the assembled response
    assert kwargs["complete_streaming_response"]["usage"] == STREAM_USAGE

    cb.EVENTS.clear()
    asked = post(base, ask(stream=True, stream_options={"include_usage": True}))
    assert events_of(asked.text)[-1]["usage"] == STREAM_USAGE  # asked for: kept
    (_, _, kwargs, _), = cb.wait_for("fn", "success")
    assert kwargs["standard_logging_object"]["usage_estimated"] is False


def test_no_usage_is_estimated_and_says_so(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    made = priced(upstream)
    made["litellm_settings"] = {"success_callback": "tests.logging_callbacks.on_success"}
    base = gateway_factory(made)
    answer = post(base, ask("no-usage"))
    # "hi there" is 8 characters: 2 tokens; "echo: hi there" is 14: 4 tokens (4 characters a token)
    assert float(answer.headers["x-asgi-llm-response-cost"]) == pytest.approx(2 * IN + 4 * OUT)
    (_, _, kwargs, _), = cb.wait_for("fn", "success")
    summary = kwargs["standard_logging_object"]
    assert summary["usage_estimated"] is True and summary["prompt_tokens"] == 2
    assert summary["completion_tokens"] == 4
    cb.EVENTS.clear()
    post(base, ask("no-usage", stream=True))
    (_, _, kwargs, _), = cb.wait_for("fn", "success")
    summary = kwargs["standard_logging_object"]
    assert summary["usage_estimated"] is True and summary["completion_tokens"] == 5  # "Hello from upstream"


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in metrics")


def test_metrics_count_calls_tokens_cost_and_errors(upstream: Upstream,
                                                    gateway_factory: Callable[..., str]) -> None:
    made = priced(upstream, metrics=True)
    made["model_list"].append({"model_name": "down", "litellm_params": {"model": "openai/down",
                                                                          "api_base": "http://127.0.0.1:9/v1"}})
    base = gateway_factory(made)
    for body in (ask(), ask(), ask(stream=True), ask("bad-request"), ask("down"), ask("nope")):
        post(base, body)
    text = httpx.get(f"{base}/metrics").text
    assert metric(text, "asgi_llm_requests_total", model="echo", route="/chat/completions", status="200") == 3
    assert metric(text, "asgi_llm_requests_total", model="bad-request", status="400") == 1
    assert metric(text, "asgi_llm_requests_total", model="down", status="502") == 1
    assert metric(text, "asgi_llm_requests_total", model="other", status="404") == 1  # unknown: no new label
    assert metric(text, "asgi_llm_upstream_errors_total", model="bad-request", type="http_400") == 1
    assert metric(text, "asgi_llm_upstream_errors_total", model="down", type="upstream_unavailable") == 1
    assert metric(text, "asgi_llm_tokens_total", model="echo", direction="input") == 3 + 3 + 4
    assert metric(text, "asgi_llm_tokens_total", model="echo", direction="output") == 2 + 2 + 3
    assert metric(text, "asgi_llm_cost_usd_total", model="echo") == pytest.approx(10 * IN + 7 * OUT)
    assert metric(text, "asgi_llm_request_duration_seconds_count", model="echo") == 3
    assert metric(text, "asgi_llm_upstream_duration_seconds_count", model="echo") == 3
    assert metric(text, "asgi_llm_overhead_seconds_count", model="echo") == 3
    assert metric(text, "asgi_llm_time_to_first_token_seconds_count", model="echo") == 1
    assert metric(text, "asgi_llm_inflight_streams") == 0
    assert metric(text, "asgi_llm_log_events_dropped_total") == 0


def test_call_headers_never_change_the_app_s_own_header_list(gateway_factory: Callable[..., str]) -> None:
    """The mock streams with a module-level header list: stamping the call headers must copy it, or
    every call would add its headers to the next one's."""
    base = gateway_factory({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
                            "general_settings": {"call_headers": True}})
    for _ in range(3):
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=ask("m", stream=True), timeout=10) as resp:
            resp.read()
        assert len(resp.headers.get_list("x-asgi-llm-call-id")) == 1
        assert len(resp.headers.get_list("x-asgi-llm-overhead-ms")) == 1


def test_a_streams_estimated_usage_is_flagged_in_the_assembled_response(upstream: Upstream,
                                                                        gateway_factory: Callable[..., str]) -> None:
    made = priced(upstream)
    made["litellm_settings"] = {"success_callback": "tests.logging_callbacks.on_success"}
    base = gateway_factory(made)
    assert post(base, ask("no-usage", stream=True)).status_code == 200  # this upstream never reports usage
    (_, _, kwargs, _), = cb.wait_for("fn", "success")
    usage = kwargs["complete_streaming_response"]["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_metrics_exact_across_batches_and_scrapes(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    """Calls are noted and counted in batches of 256: a scrape between batches, and one after more
    calls than a batch holds, both see every call and every token exactly once."""
    base = gateway_factory(priced(upstream, metrics=True))
    with httpx.Client(timeout=10) as client:
        def calls(n: int) -> None:
            for _ in range(n):
                client.post(f"{base}/v1/chat/completions", json=ask()).raise_for_status()

        calls(100)
        text = client.get(f"{base}/metrics").text
        assert metric(text, "asgi_llm_requests_total", model="echo", status="200") == 100
        calls(300)  # crosses a batch: 256 counted at once, the rest at the scrape
        text = client.get(f"{base}/metrics").text
    assert metric(text, "asgi_llm_requests_total", model="echo", status="200") == 400
    assert metric(text, "asgi_llm_request_duration_seconds_count", model="echo") == 400
    assert metric(text, "asgi_llm_tokens_total", model="echo", direction="input") == 400 * 3
    assert metric(text, "asgi_llm_cost_usd_total", model="echo") == pytest.approx(400 * (3 * IN + 2 * OUT))


def test_inflight_streams_and_master_key(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(priced(upstream, metrics=True, master_key="sk-master"))
    assert httpx.get(f"{base}/metrics").status_code == 401
    assert httpx.get(f"{base}/metrics", headers={"authorization": "Bearer wrong"}).json()["error"]["code"] == \
        "invalid_api_key"
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=ask("slow-stream", stream=True),
                      headers={"authorization": "Bearer sk-master"}, timeout=10) as streaming:
        chunks = streaming.iter_bytes()  # held: a dropped iterator closes the stream (the old flake's cause)
        next(chunks)
        text = scrape_until(base, lambda t: metric(t, "asgi_llm_inflight_streams") == 1)
        assert metric(text, "asgi_llm_inflight_streams") == 1
        chunks.close()
    # the gateway notices the client left within a few reads, then records the call
    text = scrape_until(base, lambda t: metric(t, "asgi_llm_inflight_streams") == 0 and
                        metric(t, "asgi_llm_requests_total", model="slow-stream", status="499") == 1)
    assert metric(text, "asgi_llm_inflight_streams") == 0
    assert metric(text, "asgi_llm_requests_total", model="slow-stream", status="499") == 1


def scrape_until(base: str, done: Callable[[str], bool], timeout: float = 5.0) -> str:
    """/metrics, scraped until ``done`` holds or ``timeout`` passed (then the last scrape, for the asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{base}/metrics", headers={"authorization": "Bearer sk-master"}).text
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def test_metrics_off_means_no_endpoint(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    base = gateway_factory(priced(upstream))
    assert httpx.get(f"{base}/metrics").status_code == 404


def test_moderation_rejections_are_counted(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    made = priced(upstream, metrics=True)
    made["litellm_settings"] = {"callbacks": "tests.logging_callbacks.blocker"}
    base = gateway_factory(made)
    assert post(base, ask(messages=[{"role": "user", "content": "forbidden"}])).status_code == 403
    text = httpx.get(f"{base}/metrics").text
    assert metric(text, "asgi_llm_moderation_rejections_total", model="echo") == 1


def test_queue_drops_the_oldest_when_full_and_counts_it() -> None:
    asyncio.run(queue_overflow())


async def queue_overflow() -> None:
    delivered: list[int] = []
    gate = asyncio.Event()

    async def sink(kwargs: Any, response: Any, start: Any, end: Any) -> None:
        await gate.wait()
        delivered.append(kwargs["n"])

    metrics = GatewayMetrics()
    queue = LogQueue(maxsize=2, workers=1, on_drop=metrics.dropped.inc)
    sinks = [Sink(sink, "std", "sink")]
    for n in range(5):  # put synchronously: the worker has not taken any yet
        queue.put(sinks, lambda n=n: ({"n": n}, None, None, None))  # type: ignore[misc]
    assert queue.dropped == 3 and metrics.dropped._value.get() == 3
    gate.set()
    await queue.aclose(grace=5)
    assert delivered == [3, 4]  # the newest two


def test_a_stuck_worker_does_not_hold_back_later_events() -> None:
    asyncio.run(stuck_worker())


async def stuck_worker() -> None:
    """Two events put before any worker ran go to one woken worker; when the first hangs in its
    sink, the watchdog puts another worker on the second within its 50 ms check."""
    delivered: list[int] = []
    release = asyncio.Event()

    async def sink(kwargs: Any, response: Any, start: Any, end: Any) -> None:
        if kwargs["n"] == 0:
            await release.wait()  # hangs until the end of the test (its timeout is 10 s)
        delivered.append(kwargs["n"])

    queue = LogQueue(workers=4, timeout=10.0)
    sinks = [Sink(sink, "std", "sink")]
    for n in range(2):
        queue.put(sinks, lambda n=n: ({"n": n}, None, None, None))  # type: ignore[misc]
    async with asyncio.timeout(1.0):
        while delivered != [1]:  # noqa: ASYNC110 - bounded by the timeout
            await asyncio.sleep(0.01)
    assert len(queue._tasks) == 2  # one stuck, one more started for the rest
    release.set()
    await queue.aclose(grace=5)
    assert delivered == [1, 0]


def test_reply_usage_checks_the_whole_reply() -> None:
    """The typed view that reads an upstream reply's usage also rejects every reply a full decode
    rejects: malformed JSON anywhere, a malformed non-object, invalid UTF-8 in a skipped string."""
    assert reply_usage(b'{"id":"x","choices":[{"a":[1,{"b":null}]}],"usage":{"prompt_tokens":3}}') == {
        "prompt_tokens": 3}
    assert reply_usage(b'{"id":"\xc3\xa9t\xc3\xa9"}') is None  # valid UTF-8, not ASCII: the full decode
    assert reply_usage(b"[1, 2]") is None  # valid JSON, not an object
    for bad in (b'{"id":"x","choices":[1,}', b"[1,,2]", b'{"id":"\xff"}', b'{"usage":{"a":1}} x'):
        with pytest.raises((msgspec.DecodeError, UnicodeDecodeError)):
            reply_usage(bad)


def test_completion_cost_like_litellm() -> None:
    register_prices(["priced-model"], (IN, OUT))
    response = {"model": "priced-model", "usage": {"prompt_tokens": 10, "completion_tokens": 20}}
    assert completion_cost(completion_response=response) == pytest.approx(10 * IN + 20 * OUT)
    assert completion_cost(model="priced-model", messages=[{"role": "user", "content": "12345678"}],
                           completion="1234") == pytest.approx(2 * IN + 1 * OUT)
    with pytest.raises(ValueError, match="no prices for model 'unpriced'"):
        completion_cost(model="unpriced", messages=[], completion="x")


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n"
                                          "general_settings:\n  metrics: true\n")
    with CLIServer(str(tmp_path / "config.yaml"), "--workers", "2") as server:
        for _ in range(20):  # a fresh connection each time, so both workers get some
            httpx.post(f"{server.url}/v1/chat/completions", json={"model": "m", "messages": [
                {"role": "user", "content": "x"}]}, timeout=10).raise_for_status()
        time.sleep(1.5)  # each worker hands its counts over within a second
        counts = {metric(httpx.get(f"{server.url}/metrics", timeout=10).text, "asgi_llm_requests_total",
                         model="m", status="200") for _ in range(6)}
    assert counts == {20.0}  # whichever worker answers /metrics, it reports both


def _stream(usage_nulls: bool) -> tuple[bytes, bytes, dict[str, Any]]:
    """A stream with a usage chunk, the same stream without it, and the usage."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    extra = ',"usage":null' if usage_nulls else ""
    chunks = [b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]%s}\n\n' % (w.encode(), extra.encode())
              for w in ("Hel", "lo \\u2028", "there")]
    final = b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\n"
    done = b"data: [DONE]\n\n"
    return b"".join([*chunks, final, done]), b"".join([*chunks, done]), usage


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8), nulls=st.booleans(),
       strip=st.booleans())
def test_usage_tap_takes_out_only_the_usage_chunk(cuts: list[int], nulls: bool, strip: bool) -> None:
    full, without, usage = _stream(nulls)
    trace = UpstreamTrace(want_usage=True)
    trace.strip_usage = strip
    tap = UsageTap(trace)
    bounds = sorted({min(c, len(full)) for c in cuts} | {0, len(full)})
    out = b"".join(tap.feed(full[a:b]) for a, b in itertools.pairwise(bounds)) + tap.flush()
    assert out == (without if strip else full)
    assert trace.usage == usage


def test_call_headers_without_anything_to_observe(upstream: Upstream, gateway_factory: Callable[..., str]) -> None:
    plain = gateway_factory(make_config(upstream[1], ["echo"]))
    assert "x-asgi-llm-call-id" not in post(plain, ask()).headers  # no logging layer at all
    stamped = gateway_factory(make_config(upstream[1], ["echo"], call_headers=True))
    answer = post(stamped, ask())
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-asgi-llm-call-id"])
    assert "x-asgi-llm-overhead-ms" in answer.headers and "x-asgi-llm-response-cost" not in answer.headers


def test_metrics_tally_puts_every_column_in_its_bucket() -> None:
    """Calls are counted column by column per series: each duration in its bucket with exact sums,
    upstream time only where there was an upstream call, time to first byte only for streams, tokens
    and cost only for successes, an upstream error by its status."""
    from types import SimpleNamespace

    from asgi_llm.observe.record import CallRecord
    from asgi_llm.request.routes import LLM_ROUTES

    metrics = GatewayMetrics(["m"])
    route = LLM_ROUTES["/chat/completions"]

    def call(total: float, upstream: float | None, first: float | None = None, status: int = 200) -> None:
        rec = CallRecord(route, {"type": "http", "state": {}})
        rec.trace.deployment = SimpleNamespace(model_name="m")  # type: ignore[assignment]
        rec.start, rec.end, rec.status, rec.sse, rec.first_byte = 0.0, total, status, first is not None, first
        if upstream is not None:
            rec.trace.started, rec.trace.ended = 0.0, upstream
        rec.trace.upstream_status = status
        rec.prompt_tokens, rec.completion_tokens, rec.cost = 3, 2, 0.5
        metrics.observe_record(rec, failed=status >= 400)

    async def calls() -> None:
        call(0.03, 0.012)  # overhead 0.018
        call(0.2, None, status=502)  # no upstream time: all overhead
        call(1.5, 1.42, first=0.3)  # a stream; overhead 0.08
        metrics.flush()

    asyncio.run(calls())
    value = metrics.registry.get_sample_value
    at = {"model": "m", "route": "/chat/completions"}

    def buckets(name: str, labels: dict[str, str], bounds: list[str]) -> list[float | None]:
        return [value(f"{name}_bucket", {**labels, "le": le}) for le in bounds]

    assert buckets("asgi_llm_request_duration_seconds", at, ["0.025", "0.05", "0.25", "1.0", "2.5"]) == \
        [0, 1, 2, 2, 3]
    assert value("asgi_llm_request_duration_seconds_sum", at) == pytest.approx(1.73)
    assert buckets("asgi_llm_upstream_duration_seconds", {"model": "m"}, ["0.01", "0.025", "1.0", "2.5"]) == \
        [0, 1, 1, 2]
    assert value("asgi_llm_upstream_duration_seconds_sum", {"model": "m"}) == pytest.approx(1.432)
    assert buckets("asgi_llm_overhead_seconds", {"model": "m"}, ["0.01", "0.025", "0.1", "0.25"]) == [0, 1, 2, 3]
    assert value("asgi_llm_overhead_seconds_sum", {"model": "m"}) == pytest.approx(0.298)
    assert buckets("asgi_llm_time_to_first_token_seconds", {"model": "m"}, ["0.25", "0.5", "+Inf"]) == [0, 1, 1]
    assert value("asgi_llm_requests_total", {**at, "status": "200"}) == 2
    assert value("asgi_llm_requests_total", {**at, "status": "502"}) == 1
    assert value("asgi_llm_tokens_total", {"model": "m", "direction": "input"}) == 6
    assert value("asgi_llm_tokens_total", {"model": "m", "direction": "output"}) == 4
    assert value("asgi_llm_cost_usd_total", {"model": "m"}) == pytest.approx(1.0)
    assert value("asgi_llm_upstream_errors_total", {"model": "m", "type": "http_502"}) == 1
