"""``Health``: which deployments answer, for ``/health`` and ``/health/readiness``.

A probe is one cheap request per deployment: ``GET <api_base>/models`` with the
deployment's key (no tokens spent); a mock deployment is always healthy. A
deployment whose probe fails, in a group of several, cools down at once (the router
then skips it). With ``general_settings.background_health_checks`` every deployment
is probed every ``health_check_interval`` seconds and ``/health`` reports the last
round; otherwise ``/health`` probes when asked. ``/health/readiness`` never probes: it
says which deployments are cooling down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from asgi_llm.upstream.forward import Forwarder
from asgi_llm.upstream.router import Deployment, Router

PROBE_TIMEOUT = 5.0


class Health:
    """See the module docstring."""

    def __init__(self, router: Router, forwarder: Forwarder, *, background: bool = False,
                 interval: float = 300.0) -> None:
        self.router = router
        self.forwarder = forwarder
        self.background = background
        self.interval = interval
        self.results: dict[str, str | None] = {}  # counter_id -> None (healthy) or why not
        self.checked_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def deployments(self) -> list[Deployment]:
        return [d for name in self.router.names for d in self.router.group(name)]

    async def probe(self, dep: Deployment) -> str | None:
        """None when ``dep`` answers, else why not (never its key or URL)."""
        if dep.provider != "openai":
            return None
        headers = {"Authorization": f"Bearer {dep.api_key}"} if dep.api_key else {}
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        try:
            async with self.forwarder.session.get(dep.api_base + "/models", headers=headers, timeout=timeout) as resp:
                await resp.read()
                return None if resp.status < 400 else f"answered HTTP {resp.status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            return "timed out" if isinstance(exc, TimeoutError) else f"unreachable ({type(exc).__name__})"

    async def check(self) -> None:
        """Probe every deployment now; a failed probe cools its deployment down (in groups of several)."""
        deployments = self.deployments()
        found = await asyncio.gather(*(self.probe(d) for d in deployments))
        for dep, why in zip(deployments, found, strict=True):
            self.results[dep.counter_id] = why
            if why is not None and dep.model_name in self.router.several:
                await self.router.cooldowns.failed(dep.counter_id, at_once=True)
        self.checked_at = time.time()

    def start(self) -> None:
        """Begin the background checks (when configured) in this loop."""
        if self.background and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a probe round never stops the next one
                await self.check()
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def cooling(self) -> list[dict[str, Any]]:
        cooling = self.router.cooldowns.cooling
        return [{"model_name": d.model_name, "deployment": d.label, "seconds_left": round(cooling(d.counter_id), 1)}
                for d in self.deployments() if cooling(d.counter_id)]

    async def report(self) -> dict[str, Any]:
        """LiteLLM's ``/health`` shape: healthy and unhealthy deployments (never a key)."""
        if not self.background or self.checked_at is None:
            await self.check()
        healthy, unhealthy = [], []
        cooling = self.router.cooldowns.cooling
        for dep in self.deployments():
            entry: dict[str, Any] = {"model_name": dep.model_name, "model": dep.label, "api_base": dep.api_base}
            why = self.results.get(dep.counter_id)
            if why is None and cooling(dep.counter_id):
                why = "cooling down after failures"
            if why is None:
                healthy.append(entry)
            else:
                unhealthy.append({**entry, "error": why})
        return {"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy, "healthy_count": len(healthy),
                "unhealthy_count": len(unhealthy), "checked_at": self.checked_at}
