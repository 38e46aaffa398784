"""What the client gets when the upstream fails: its own error, or ours for transport failures.

Upstream 4xx/5xx keep their status and the upstream's OpenAI error fields (missing
ones filled in); a body that is not an OpenAI error is wrapped in one. An upstream
401/403 is the gateway's misconfiguration, not the client's: it becomes a 502 naming
the deployment. Every text taken from the upstream is scrubbed of the deployment's
key first (``Scrubber``). Timeouts are 504, every other transport failure 502.
Messages name the model, never a URL or key.
"""

from __future__ import annotations

import aiohttp
import msgspec

from asgi_llm.request.errors import GatewayError
from asgi_llm.upstream.router import Deployment

_decode = msgspec.json.decode


def upstream_error(status: int, data: bytes, dep: Deployment, headers: dict[str, str]) -> GatewayError:
    """The client's error for an upstream 4xx/5xx: the upstream's own fields where it sent an
    OpenAI error body (missing ones filled in), else its text wrapped in one; ``data`` is
    already scrubbed of the deployment's key."""
    try:
        parsed = _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        parsed = None
    error = dep.scrubber.value(parsed.get("error")) if isinstance(parsed, dict) else None  # JSON escapes too
    if isinstance(error, str):
        error = {"message": error}
    if status in (401, 403):
        said = error.get("message") if isinstance(error, dict) else None
        detail = said if isinstance(said, str) else data[:200].decode("utf-8", "replace").strip()
        return GatewayError(502, f"Upstream for model {dep.model_name!r} (deployment {dep.label}) refused the "
                            f"gateway's credentials ({status}): {detail or '(empty body)'}. Check the deployment's "
                            "api_key.", code="upstream_auth_failed")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        err = GatewayError(status, error["message"], param=error.get("param"), headers=headers,
                           type=error.get("type") if isinstance(error.get("type"), str) else None)
        err.code = error.get("code")  # kept as the upstream sent it, null included
        return err
    text = data[:500].decode("utf-8", "replace").strip() or "(empty body)"
    return GatewayError(status, f"Upstream for model {dep.model_name!r} answered {status}: {text}",
                        code="upstream_error", headers=headers)


def transport_error(exc: BaseException, dep: Deployment, stream: bool) -> GatewayError:
    """Map an aiohttp or timeout exception to the client's error; never shows URLs or keys."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        limit = dep.stream_timeout if stream else dep.timeout
        return GatewayError(504, f"Upstream for model {dep.model_name!r} timed out (limit {limit:g}s).",
                            code="upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        what = "is unreachable"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        what = "cut its reply short"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        what = "closed the connection"
    else:
        what = f"sent an unusable reply ({type(exc).__name__})"
    return GatewayError(502, f"Upstream for model {dep.model_name!r} {what}.", code="upstream_unavailable")
