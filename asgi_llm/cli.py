"""``asgi-llm --config FILE``: check the config, then serve it with uvicorn.

A config that cannot run stops start-up with one line (``asgi-llm: config error:
...``) and exit status 2, never a traceback. Workers load the config through
``asgi_llm.gateway:app_from_env``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile

import uvicorn

from asgi_llm.config.callbacks import load_callbacks, load_functions
from asgi_llm.config.load import ConfigError, load_config
from asgi_llm.gateway import CONFIG_ENV, load_prompt_store
from asgi_llm.hooks.auth import hash_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="asgi-llm", description="OpenAI-compatible LLM gateway.")
    parser.add_argument("--config", help="LiteLLM-shaped YAML config file")
    parser.add_argument("--hash-key", metavar="KEY", help="print the sha256 digest to store as keys[].key_hash")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    return parser.parse_args(argv)


def raise_open_files() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one (uvicorn does not): every open stream holds
    two sockets, and the upstream pool is bounded by this limit. Returns (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, hard
    return soft, soft


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hash_key:
        print(hash_key(args.hash_key))
        return 0
    if not args.config:
        print("asgi-llm: --config FILE is required", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    try:
        config, unsupported = load_config(args.config)
        load_callbacks(config.litellm_settings.callbacks, config.path)  # fail here, not in a worker
        for key in ("success_callback", "failure_callback", "input_callback"):
            load_functions(getattr(config.litellm_settings, key), config.path, f"litellm_settings.{key}")
        if config.prompts.path is not None:
            load_prompt_store(config)
    except ConfigError as exc:
        print(f"asgi-llm: config error: {exc}", file=sys.stderr)
        return 2
    if unsupported:
        logging.getLogger("asgi_llm").warning(
            "config keys not supported by asgi-llm, ignored: %s", ", ".join(unsupported))
    os.environ[CONFIG_ENV] = config.path or os.path.abspath(args.config)
    log = logging.getLogger("asgi_llm")
    log.info("serving %d model(s) on http://%s:%d", len(config.model_list), args.host, args.port)
    before, now = raise_open_files()  # workers inherit it
    pool = config.general_settings.upstream
    log.info("open files per worker: %d%s; upstream pool: %s", now, f" (raised from {before})" if now > before else "",
             f"at most {pool.max_connections} connections, a call waits at most {pool.pool_timeout:g} s"
             if pool.max_connections else "no cap but the open-files limit")
    shared = None
    if args.workers > 1 and config.general_settings.metrics and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        shared = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="asgi-llm-metrics-")
    try:  # workers are fresh processes: they see the directory before importing prometheus-client
        uvicorn.run("asgi_llm.gateway:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, access_log=args.access_log,
                    loop="auto", http="auto", timeout_graceful_shutdown=30)
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
