"""Forwarding to an OpenAI-compatible upstream over one shared aiohttp session.

Contract:
- Only the config chooses the target: the URL is the deployment's ``api_base`` plus
  the route; the key is the deployment's. Client credentials and every other client
  header outside ``FORWARDED_HEADERS`` stay here; LiteLLM-only body fields
  (``STRIPPED_FIELDS``) are removed and ``model`` is set to the deployment's.
- Retries (``Deployment.retries``) happen only before anything went to the client,
  on connection errors, 429 and 5xx, with doubling backoff that honours Retry-After.
- Timeouts give 504, transport errors and unusable replies 502; upstream 4xx/5xx
  pass through with their status and OpenAI error body.
- Streams are relayed chunk by chunk as they arrive (backpressure comes from
  ``send``); a client that leaves cancels the upstream request at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import aiohttp
import msgspec

from asgi_llm.config.load import UpstreamSettings
from asgi_llm.observe.cost import reply_usage
from asgi_llm.observe.metrics import GatewayMetrics
from asgi_llm.request.errors import GatewayError
from asgi_llm.types import Send
from asgi_llm.upstream.errors import transport_error, upstream_error
from asgi_llm.upstream.pool import PoolGate
from asgi_llm.upstream.router import Deployment
from asgi_llm.upstream.trace import UpstreamTrace

FORWARDED_HEADERS = frozenset({b"accept", b"openai-beta", b"x-request-id"})
DROPPED_RESPONSE_HEADERS = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"content-length", b"content-encoding", b"date", b"server", b"set-cookie",
})
STRIPPED_FIELDS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "organization", "extra_headers", "headers", "user_config",
    "metadata", "prompt_id", "prompt_variables", "prompt_label", "prompt_version", "mock_response",
    "num_retries", "max_retries", "timeout", "stream_timeout", "fallbacks", "context_window_fallback_dict",
    "custom_llm_provider", "deployment_id", "proxy_server_request", "litellm_call_id", "litellm_logging_obj",
    "litellm_metadata", "secret_fields", "caching", "cache", "guardrails", "tags",
})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})  # 529: Anthropic's "overloaded"


class StreamTranslator(Protocol):
    """A provider's stream, as it arrives, into OpenAI's SSE chunks (bytes in, bytes out)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Translation(Protocol):
    """How a provider's answers become OpenAI's shape (``None``: they already are)."""

    def reply(self, data: bytes) -> bytes: ...

    def stream(self) -> StreamTranslator: ...
_encode = msgspec.json.Encoder().encode


def without_gateway_fields(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the gateway-only and steering fields (``STRIPPED_FIELDS``): what may leave the stack."""
    return {k: v for k, v in body.items() if k not in STRIPPED_FIELDS}


def upstream_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The body the upstream gets: gateway-only fields gone, ``model`` the deployment's."""
    out = without_gateway_fields(body)
    out["model"] = model
    return out


def request_headers(dep: Deployment, client: list[tuple[bytes, bytes]], content_type: str | None) -> dict[str, str]:
    headers = {"content-type": content_type or "application/json"}
    for name, value in client:
        if name in FORWARDED_HEADERS:  # ASGI header names are lower-case bytes
            headers[name.decode("latin-1")] = value.decode("latin-1")
    if dep.api_key:
        headers["authorization"] = f"Bearer {dep.api_key}"
    return headers


def response_headers(resp: aiohttp.ClientResponse, length: int | None) -> list[tuple[bytes, bytes]]:
    """The upstream's headers for the client: hop-by-hop ones gone, the fixed set and those the
    upstream's ``Connection`` header nominates (RFC 9110 7.6.1)."""
    dropped = DROPPED_RESPONSE_HEADERS
    nominated = resp.headers.getall("connection", ())
    if nominated:
        dropped = dropped | {t.strip().lower().encode("latin-1") for v in nominated for t in v.split(",")}
    out = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in dropped]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` value in seconds, or None when absent or not a number."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Forwarder:
    """Sends one request upstream and relays the answer; owns the shared session."""

    def __init__(self, settings: UpstreamSettings, session: aiohttp.ClientSession | None = None,
                 metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        # a cap is ours, visible and bounded in time (PoolGate); aiohttp's own would queue calls silently
        self.gate = PoolGate(settings.max_connections, settings.pool_timeout, metrics) if settings.max_connections \
            else None
        self._session = session
        self._owns_session = session is None
        self._timeouts: dict[tuple[float, bool], aiohttp.ClientTimeout] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: a mounted app may never see a lifespan
            s = self.settings
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=s.max_connections_per_host,
                                             keepalive_timeout=s.keepalive_timeout, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def timeout(self, dep: Deployment, stream: bool) -> aiohttp.ClientTimeout:
        key = (dep.stream_timeout if stream else dep.timeout, stream)
        found = self._timeouts.get(key)
        if found is None:
            connect = self.settings.connect_timeout
            found = (aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=key[0]) if stream
                     else aiohttp.ClientTimeout(total=key[0], sock_connect=connect))
            self._timeouts[key] = found
        return found

    async def backoff(self, attempt: int, resp: aiohttp.ClientResponse | None) -> None:
        await self.pause(attempt, retry_after(resp.headers.get("retry-after") if resp is not None else None))

    async def pause(self, attempt: int, wait: float | None) -> None:
        """Wait before retrying the same upstream: ``wait`` (its Retry-After), else a doubling jittered
        backoff; at most ``max_retry_wait``."""
        if wait is None:
            wait = self.settings.retry_backoff * (2**attempt) * (0.5 + random.random() / 2)
        await asyncio.sleep(min(max(wait, 0.0), self.settings.max_retry_wait))

    def forward(self, dep: Deployment, url: str, body: bytes | AsyncIterator[bytes],
                headers: dict[str, str], stream: bool, send: Send, trace: UpstreamTrace | None = None,
                retries: int | None = None, translate: Translation | None = None) -> Awaitable[None]:
        """Call the upstream (with ``retries``, else the deployment's) and relay its answer through ``send``;
        fill ``trace``. With a pool cap, the call holds one slot of it throughout."""
        call = self._attempts(dep, url, body, headers, stream, send, trace, retries, translate)
        return call if self.gate is None else self._gated(call)

    async def _gated(self, call: Awaitable[None]) -> None:
        gate = self.gate
        assert gate is not None
        try:
            await gate.acquire()
        except BaseException:
            call.close()  # type: ignore[attr-defined]  # never started: no "never awaited" warning
            raise
        try:
            await call
        finally:
            gate.release()

    async def _attempts(self, dep: Deployment, url: str, body: bytes | AsyncIterator[bytes],
                        headers: dict[str, str], stream: bool, send: Send, trace: UpstreamTrace | None,
                        retries: int | None, translate: Translation | None) -> None:
        more = dep.retries if retries is None else retries
        attempts = 1 + (more if isinstance(body, bytes) else 0)  # a streamed upload cannot be replayed
        timeout = self.timeout(dep, stream)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            if trace is not None:
                trace.begin(time.perf_counter())
            try:
                resp = await self.session.post(url, data=body, headers=headers, timeout=timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                retryable = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError)
                if last or not retryable:
                    raise transport_error(exc, dep, stream) from None
                await self.backoff(attempt, None)
                continue
            if trace is not None:
                trace.upstream_status, trace.headers_at = resp.status, time.perf_counter()
            try:
                if resp.status in RETRY_STATUSES and not last:
                    resp.close()  # free the connection before waiting
                    await self.backoff(attempt, resp)
                    continue
                await self.relay(resp, dep, stream, send, trace, translate)
                return
            except (TimeoutError, aiohttp.ClientError) as exc:
                resp.close()
                raise transport_error(exc, dep, stream) from None
            except BaseException:
                resp.close()  # cancelled or failed mid-body: drop the connection, stop the upstream
                raise
            finally:
                resp.release()

    async def relay(self, resp: aiohttp.ClientResponse, dep: Deployment, stream: bool, send: Send,
                    trace: UpstreamTrace | None, translate: Translation | None = None) -> None:
        media = resp.content_type
        if stream and resp.status < 400 and media == "text/event-stream":
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": response_headers(resp, None)})
            tap = trace.tap() if trace is not None else None
            into = translate.stream() if translate is not None else None  # a provider's events, as OpenAI's
            async for chunk in resp.content.iter_any():
                if into is not None and not (chunk := into.feed(chunk)):
                    continue
                if tap is not None and not (chunk := tap.feed(chunk)):
                    continue
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            last = into.flush() if into is not None else b""
            if tap is not None:
                last = (tap.feed(last) if last else b"") + tap.flush()
            await send({"type": "http.response.body", "body": last, "more_body": False})
            if trace is not None:
                trace.done(None, time.perf_counter())
            return
        data = await resp.read()
        if resp.status >= 400:  # an error body may echo the key: scrubbed before anyone sees it
            data = dep.scrubber.data(data)
        if trace is not None:
            trace.done(data, time.perf_counter())
        if resp.status >= 400:
            kept = {"retry-after": resp.headers["retry-after"]} if "retry-after" in resp.headers else {}
            raise upstream_error(resp.status, data, dep, kept)
        elif media == "application/json":
            try:
                if translate is not None:
                    data = translate.reply(data)
                usage = reply_usage(data)
                if trace is not None and isinstance(usage, dict):
                    trace.usage = usage  # billed usage, so the logging layer need not parse the body again
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, ValueError):
                raise GatewayError(502, f"Upstream for model {dep.model_name!r} sent a reply that is not "
                                   "valid JSON of its API's shape.", code="upstream_unusable_reply") from None
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": response_headers(resp, len(data))})
        await send({"type": "http.response.body", "body": data})
