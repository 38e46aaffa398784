"""Each way the README runs the gateway, as a subprocess over a socket, written the way the README writes it."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asgi_llm import Errors, Gateway, Ingest, UpstreamApp
from middlewares import Auth, CallHooks, CallLogging, EnforceUserParam, MetricsEndpoint, Moderation, StreamHooks
from middlewares.prompt_templating import PromptTemplating
from tests.servers import free_socket

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIG = str(ROOT / "examples" / "config.yaml")
HOST_APP = '''
import contextlib
from starlette.applications import Starlette
from starlette.routing import Mount
from asgi_llm import create_app

llm = create_app({config!r})

@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    await llm.aclose()

app = Starlette(routes=[Mount("/llm", app=llm)], lifespan=lifespan)
'''


def test_every_asgi_callable_is_a_coroutine_function() -> None:
    """Servers tell ASGI3 from ASGI2 by ``inspect.iscoroutinefunction(app.__call__)``."""
    for layer in (Errors, Ingest, UpstreamApp, Gateway, Auth, CallHooks, CallLogging, EnforceUserParam,
                  MetricsEndpoint, Moderation, StreamHooks, PromptTemplating):
        assert inspect.iscoroutinefunction(layer.__call__), layer.__name__


def _port() -> int:
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("way", ["asgi-llm", "python -m asgi_llm", "uvicorn examples.app:app", "mounted"])
def test_the_readmes_ways_to_run_serve_requests(way: str, tmp_path: Path) -> None:
    port = _port()
    prefix, model, cwd = "", "gpt-4o-mini", ROOT
    if way == "asgi-llm":
        command = [str(BIN / "asgi-llm"), "--config", CONFIG, "--port", str(port)]
    elif way == "python -m asgi_llm":
        command = [sys.executable, "-m", "asgi_llm", "--config", CONFIG, "--port", str(port)]
    elif way == "uvicorn examples.app:app":
        command = [str(BIN / "uvicorn"), "examples.app:app", "--port", str(port)]
    else:
        (tmp_path / "host.py").write_text(HOST_APP.format(config=CONFIG))
        command, prefix, cwd = [str(BIN / "uvicorn"), "host:app", "--port", str(port)], "/llm", tmp_path
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}{prefix}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = httpx.post(f"{base}/v1/chat/completions", timeout=5,
                                  json={"model": model, "messages": [{"role": "user", "content": "ping"}]})
                break
            except httpx.TransportError:
                assert proc.poll() is None, f"{way} exited: {proc.communicate()[0]}"
                assert time.monotonic() < deadline, f"{way} did not start"
                time.sleep(0.1)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].endswith("You said: ping")
        with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=5, json={
                "model": model, "stream": True, "messages": [{"role": "user", "content": "ping"}]}) as streamed:
            assert streamed.status_code == 200
            assert list(streamed.iter_lines())[-2:] == ["data: [DONE]", ""]
        assert httpx.get(f"{base}/v1/models", timeout=5).json()["data"][0]["id"] == model
        if way == "uvicorn examples.app:app":  # its outermost layer serves /metrics
            metrics = httpx.get(f"{base}/metrics", timeout=5)
            assert metrics.status_code == 200 and "asgi_llm_requests_total" in metrics.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "Traceback" not in out, out


def test_served_by_granian(tmp_path: Path) -> None:
    """Another ASGI server: granian's ``receive()`` returns a plain awaitable, not a coroutine."""
    import shutil
    import socket

    granian = shutil.which("granian", path=str(Path(sys.executable).parent))
    assert granian is not None, "granian is a dev dependency"
    config = tmp_path / "config.yaml"
    config.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([granian, "--interface", "asgi", "--factory", "--no-log", "--port", str(port),
                             "asgi_llm.gateway:app_from_env"], env={**os.environ, "ASGI_LLM_CONFIG": str(config)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(base, json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].endswith("hi")
        streamed = httpx.post(base, json={**body, "stream": True}, timeout=10)
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
        assert httpx.post(base, json={"model": "nope", "messages": []}, timeout=10).status_code in (400, 404)
    finally:
        proc.terminate()
        proc.wait(20)
