"""Where the gateway's Redis is, from LiteLLM's keys: ``cache_params``, ``router_settings``, ``REDIS_*``.

The first place that names a host or URL wins, in that order; ``cache_params.type:
local`` keeps the response cache in memory even when Redis serves the limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asgi_llm.config.load import ConfigError
from asgi_llm.config.schema import CacheParams, Config


@dataclass(frozen=True)
class RedisTarget:
    """How to reach Redis; ``password`` is never logged (``__repr__`` leaves it out)."""

    url: str | None = None
    host: str | None = None
    port: int = 6379
    password: str | None = None
    db: int = 0
    socket_timeout: float = 0.5
    socket_connect_timeout: float = 0.5

    def __repr__(self) -> str:
        where = self.url.rpartition("@")[2] if self.url else f"{self.host}:{self.port}/{self.db}"
        return f"RedisTarget({where})"


def redis_target(config: Config) -> RedisTarget | None:
    """The configured Redis, or None: everything then stays in this process."""
    params = config.litellm_settings.cache_params
    router = config.router_settings
    timeout, connect = params.socket_timeout, params.socket_connect_timeout
    if params.host or params.url:
        return RedisTarget(url=params.url, host=params.host, port=params.port or 6379, password=params.password,
                           db=params.db or 0, socket_timeout=timeout, socket_connect_timeout=connect)
    if router.redis_host or router.redis_url:
        return RedisTarget(url=router.redis_url, host=router.redis_host, port=router.redis_port or 6379,
                           password=router.redis_password, db=router.redis_db or 0, socket_timeout=timeout,
                           socket_connect_timeout=connect)
    env = os.environ
    if env.get("REDIS_URL") or env.get("REDIS_HOST"):
        port = env.get("REDIS_PORT") or "6379"
        if not port.isdigit():
            raise ConfigError(f"REDIS_PORT: must be a port number, got {port!r}")
        return RedisTarget(url=env.get("REDIS_URL") or None, host=env.get("REDIS_HOST"), port=int(port),
                           password=env.get("REDIS_PASSWORD") or None, socket_timeout=timeout,
                           socket_connect_timeout=connect)
    if params.type == "redis":
        raise ConfigError("`litellm_settings.cache_params.host`: cache type is redis but no Redis is named "
                               "(set host/port or url, router_settings.redis_host, or REDIS_HOST/REDIS_URL)")
    return None


def cache_in_redis(params: CacheParams, target: RedisTarget | None) -> bool:
    """Whether the response cache lives in Redis (else in this process's memory)."""
    return target is not None and params.type != "local"
