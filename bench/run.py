"""``make bench``: the gateway against the direct upstream and minimal passthroughs, in one run.

Layout on a 2-core machine: every server under test is one uvicorn process pinned to
core 0; the load generator (wrk) and the fast canned upstream share core 1. All servers
start together and are measured in turn, ``--rounds`` times (interleaved, so a slow
spell of a shared machine hits them alike); each number is the median over the rounds.
Each scenario reports throughput, p50/p99 latency and the server's CPU time per request,
and the gateway's numbers as ratios to the fastest passthrough measured alongside. Each
hook scenario is a ratio to the no-hook gateway; beside them, a control (the no-hook
config again, in a second process) shows how far identical code lands from 100% in this run.
``make bench`` then runs ``instructions.py``, which counts instructions per request for the same
gateway scenarios (repeatable where these timings drift).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CHAT = '{"model":"bench-model","user":"bench","messages":[{"role":"user","content":"Say hello in five words."}]%s}'
PROMPT = (',"prompt_id":"bench-prompt","prompt_variables":{"tone":"friendly","product":"Acme",'
          '"limit":40}')
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
CONTROL = "asgi-llm (no hooks, control)"


def models_yaml(upstream: str, deployments: int = 1) -> str:
    entry = (f"  - model_name: bench-model\n    litellm_params:\n"
             f"      model: openai/bench-model\n      api_base: {upstream}/v1\n      api_key: sk-upstream\n")
    return "model_list:\n" + entry * deployments


# the bench's client key (wrk sends it), as `keys[].key_hash`
def spare_yaml(upstream: str) -> str:
    """A fallback group for bench-model (never used: the upstream never fails)."""
    return (f"  - model_name: spare-model\n    litellm_params: {{model: openai/bench-model, api_base: {upstream}/v1}}\n"
            "router_settings:\n  fallbacks: [{bench-model: [spare-model]}]\n")


def redis_configs(models: str, redis_port: int) -> dict[str, tuple[str, str]]:
    """The shared-state scenarios: every request a cache hit; a key whose Redis-checked limits never trigger."""
    from asgi_llm.hooks.auth import hash_key

    redis = f"{{type: redis, host: 127.0.0.1, port: {redis_port}}}"
    limits = ("keys:\n  - key_hash: " + hash_key("sk-bench") + "\n    rpm_limit: 1000000000\n"
              "    tpm_limit: 1000000000000\n    max_parallel_requests: 100000\n")
    return {
        "asgi-llm (cache hit)": (models + f"litellm_settings:\n  cache: true\n  cache_params: {redis}\n", ""),
        "asgi-llm (redis limits)": (models + limits + f"router_settings:\n  redis_host: 127.0.0.1\n"
                                                      f"  redis_port: {redis_port}\n", ""),
    }


def gateway_configs(upstream: str, redis_port: int | None = None) -> dict[str, tuple[str, str]]:
    """Every gateway scenario: name -> (config YAML, what the request body adds). With ``redis_port``, the
    shared-state scenarios too."""
    models = models_yaml(upstream)
    return {
        "asgi-llm (no hooks)": (models, ""),
        "asgi-llm (pre-call+user)": (models + "litellm_settings:\n  callbacks: bench.noop_hooks.noop\n"
                                              "general_settings:\n  enforce_user_param: true\n", ""),
        "asgi-llm (prompt store)": (models + f"prompts:\n  path: {ROOT / 'bench' / 'prompts'}\n", PROMPT),
        "asgi-llm (chunk+moderation)": (models + "litellm_settings:\n  callbacks: "
                                                 "bench.noop_hooks.stream_and_moderation\n", ""),
        "asgi-llm (success cb+metrics)": (models + "litellm_settings:\n  callbacks: bench.noop_hooks."
                                                   "success_logger\ngeneral_settings:\n  metrics: true\n", ""),
        "asgi-llm (2 deployments+fallback)": (models_yaml(upstream, 2) + spare_yaml(upstream), ""),
        "asgi-llm (full stack)": (models + "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: "
                                           "0.000002}\nlitellm_settings:\n  callbacks: bench.noop_hooks.full_stack\n"
                                           "general_settings:\n  master_key: sk-bench\n  enforce_user_param: true\n"
                                           "  metrics: true\n", ""),
        "asgi-llm (anthropic translated)": ("model_list:\n  - model_name: bench-model\n    litellm_params: "
                                            f"{{model: anthropic/bench-model, api_base: {upstream}, "
                                            "api_key: sk-bench-anthropic}\n", ""),
        **(redis_configs(models, redis_port) if redis_port is not None else {}),
    }


def redis_commands(port: int) -> int:
    """Script calls the bench's redis-server has answered so far (the gateway sends nothing else here; each
    is at most one round trip, and a worker's concurrent calls share one). ``total_commands_processed``
    would count each command inside a script too."""
    import redis

    with redis.Redis(host="127.0.0.1", port=port) as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval", "script|load"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@contextmanager
def server(cmd: list[str], port: int, core: str, env: dict[str, str] | None = None) -> Iterator[int]:
    proc = subprocess.Popen(["taskset", "-c", core, *cmd], env={**os.environ, **(env or {})}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, limit: float = 10.0) -> None:
    """Wait until the server just measured is idle. A server that fell behind (the httpx passthrough
    at c=64) still works through its backlog after wrk stops, on the core the next server shares:
    measured next, the no-hook gateway read 6-8% slower than the same config measured later."""
    deadline, last = time.monotonic() + limit, cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_seconds(pid)
        if now - last < 0.01:  # under 5% of a core over the interval
            return
        last = now


def wrk_script(stream: bool, extra: str = "") -> Path:
    """A wrk Lua script (a temporary file) posting the bench's chat body with the bench's key."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    body = CHAT % ((',"stream":true' if stream else "") + extra)
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{body}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      'wrk.headers["Authorization"] = "Bearer sk-bench"\n')
    return script


def wrk(port: int, conns: int, seconds: int, stream: bool, pid: int | None, extra: str = "",
        warm: bool = True, redis_port: int | None = None) -> dict[str, float]:
    script = wrk_script(stream, extra)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    if warm:  # connections, caches, lazy imports
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", "-d1s", "-s", str(script), url],
                       capture_output=True, check=True)
        if pid:
            settle(pid)  # its own warm-up backlog must not count in its measurement either
    before = cpu_seconds(pid) if pid else 0.0
    commands = redis_commands(redis_port) if redis_port else 0
    # wrk's own 2 s timeout counts as an error: the httpx passthrough's p99 at c=64 has come near it
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before if pid else 0.0
    commands = redis_commands(redis_port) - commands if redis_port else 0
    script.unlink()
    if pid:
        settle(pid)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise RuntimeError(f"errors during the run:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")  # type: ignore[union-attr]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "cpu_ms": 1000 * used / requests if pid else 0.0,
            "redis": commands / requests}


MODERATION_DELAY = 0.1


def redis_server(port: int) -> list[str]:
    """The shared-state scenarios' redis-server (Debian's), nothing kept on disk."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def first_byte_times(models: str, count: int = 20) -> list[float]:
    """Sequential streaming requests to a gateway whose moderation hook sleeps MODERATION_DELAY."""
    config = Path(tempfile.mkstemp(suffix=".yaml")[1])
    config.write_text(models + "litellm_settings:\n  callbacks: bench.noop_hooks.stream_and_moderation\n")
    port = free_port()
    cmd = [PY, "-m", "asgi_llm", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    body = (CHAT % ',"stream":true').encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n%s" % (len(body), body))
    times = []
    with server(cmd, port, "0", {"BENCH_MODERATION_DELAY": str(MODERATION_DELAY)}):
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                began = time.perf_counter()
                sock.sendall(request)
                sock.recv(1)
                times.append(time.perf_counter() - began)
    config.unlink()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many interleaved rounds")
    parser.add_argument("--processes", type=int, default=1, help="gateway processes per config; the medians "
                        "take in every process's rounds (two processes of one config can differ by points)")
    parser.add_argument("--only", default="", help="comma-separated words: run only the gateway scenarios "
                        "whose name holds one (the no-hook run and the passthroughs always run)")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("bench needs wrk and taskset (make bench installs wrk from Debian)")
    up_port, redis_port = free_port(), free_port()
    scenarios = [("chat c=1", 1, False), ("chat c=64", 64, False), ("stream c=16", 16, True)]
    uvicorn = [PY, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
    runs: dict[str, list[dict[str, dict[str, float]]]] = {}
    with ExitStack() as stack:
        stack.enter_context(server([PY, "bench/fast_upstream.py", "--port", str(up_port)], up_port, "1"))
        stack.enter_context(server(redis_server(redis_port), redis_port, "1"))  # shares wrk's core, as upstreams do
        upstream = f"http://127.0.0.1:{up_port}"
        targets: list[tuple[str, int, int | None, str]] = [("direct upstream", up_port, None, "")]  # port, pid, extra
        redis_users = set(redis_configs("", redis_port))
        for client in ("aiohttp", "httpx"):
            port = free_port()
            env = {"BENCH_UPSTREAM": upstream, "BENCH_CLIENT": client}
            pid = stack.enter_context(server([*uvicorn, "bench.passthrough:app", "--port", str(port)], port, "0", env))
            targets.append((f"passthrough ({client})", port, pid, ""))
        models = models_yaml(upstream)
        gateways = gateway_configs(upstream, redis_port)
        wanted = [w for w in args.only.split(",") if w]
        # the control: the no-hook config again, in a process of its own. Its distance from 100% is
        # this run's noise (identical code has differed by 6 points here), to read every ratio against
        gateways = {**gateways, CONTROL: gateways["asgi-llm (no hooks)"]}
        for who, (text, extra) in gateways.items():
            if wanted and who not in ("asgi-llm (no hooks)", CONTROL) and not any(w in who for w in wanted):
                continue
            config = Path(tempfile.mkstemp(suffix=".yaml")[1])
            config.write_text(text)
            for _ in range(args.processes):
                port = free_port()
                cmd = [PY, "-m", "asgi_llm", "--config", str(config), "--port", str(port), "--log-level", "warning"]
                targets.append((who, port, stack.enter_context(server(cmd, port, "0")), extra))
        # Every server runs at once (idle ones cost nothing) and each round measures them all in
        # turn, so a slow spell of this shared machine hits every server alike; the median counts.
        for round_ in range(args.rounds):
            for who, port, pid, extra in targets:
                runs.setdefault(who, []).append({n: wrk(port, c, args.seconds, s, pid, extra, warm=round_ == 0,
                                                        redis_port=redis_port if who in redis_users else None)
                                                 for n, c, s in scenarios})
        ttfb = first_byte_times(models) if not wanted or any(w in "asgi-llm (chunk+moderation)" for w in wanted) else []
    results = {who: {n: {k: statistics.median(r[n][k] for r in rounds) for k in rounds[0][n]} for n, _, _ in scenarios}
               for who, rounds in runs.items()}
    report(results, [name for name, _, _ in scenarios])
    if ttfb:
        print(f"\ntime to first byte, streaming, moderation hook sleeping {MODERATION_DELAY * 1000:.0f} ms "
              f"(median of {len(ttfb)}): {statistics.median(ttfb) * 1000:.1f} ms, max {max(ttfb) * 1000:.1f} ms")


def report(results: dict[str, dict[str, dict[str, float]]], scenarios: list[str]) -> None:
    print(f"\n{'server':<32}{'scenario':<14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
    for who, runs in results.items():
        for name in scenarios:
            r = runs[name]
            cpu = f"{r['cpu_ms']:.3f}" if r["cpu_ms"] else "-"
            print(f"{who:<32}{name:<14}{r['rps']:>9.0f}{r['p50']:>9.3f}{r['p99']:>9.3f}{cpu:>12}")
    gateway = results["asgi-llm (no hooks)"]
    print("\nasgi-llm against the fastest passthrough in this run (throughput ratio, added p50):")
    for name in scenarios:
        best = max((runs[name] for who, runs in results.items() if who.startswith("passthrough")),
                   key=lambda r: r["rps"])
        g = gateway[name]
        print(f"  {name:<12} {g['rps'] / best['rps']:6.1%} of {best['rps']:.0f} req/s, "
              f"p50 {g['p50'] - best['p50']:+.3f} ms, CPU/req {g['cpu_ms'] - best['cpu_ms']:+.3f} ms")
    print("\nhook scenarios against asgi-llm with no hooks (throughput ratio, added p50); the control is the "
          "same no-hook config in processes of its own, so its distance from 100% is this run's noise:")
    for who, runs in results.items():
        if who.startswith("asgi-llm (") and runs is not gateway:
            for name in scenarios:
                r, g = runs[name], gateway[name]
                trips = f", {r['redis']:.2f} Redis script calls/request" if r.get("redis") else ""
                print(f"  {who:<31} {name:<12} {r['rps'] / g['rps']:6.1%}, p50 {r['p50'] - g['p50']:+.3f} ms{trips}")


if __name__ == "__main__":
    main()
