"""Minimal passthrough proxies, the baseline the gateway is measured against.

``BENCH_CLIENT=aiohttp`` (the gateway's client) or ``httpx``; ``BENCH_UPSTREAM`` is the
upstream base URL. Reads the body, posts it upstream, relays the answer (streams
chunk by chunk). No validation, no routing, no disconnect handling: the floor.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import aiohttp
import httpx

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8001")
# The same GC settings the gateway's workers use, so the comparison measures the proxies, not the GC.
gc.collect()
gc.freeze()
gc.set_threshold(20_000, 20, 20)
CLIENT = os.environ.get("BENCH_CLIENT", "aiohttp")
state: dict[str, Any] = {}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = int(os.environ.get("BENCH_POOL_LIMIT", "1000"))  # 0: no cap (the open-streams bench)
                state["client"] = (aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool))
                                   if CLIENT == "aiohttp" else
                                   httpx.AsyncClient(limits=httpx.Limits(max_connections=1000), timeout=60))
                await send({"type": "lifespan.startup.complete"})
            else:
                await state["client"].aclose() if CLIENT == "httpx" else await state["client"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    url = UPSTREAM + scope["path"]
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    if CLIENT == "aiohttp":
        async with state["client"].post(url, data=body, headers=headers) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(b"content-type", resp.headers["content-type"].encode())]})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    else:
        async with state["client"].stream("POST", url, content=body, headers=headers) as resp:
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": [(b"content-type", resp.headers["content-type"].encode())]})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
