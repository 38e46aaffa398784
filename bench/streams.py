"""``make bench``, part three: thousands of slow streams open at once, against the passthrough.

A paced upstream (raw asyncio, on core 1) answers every call with ``--events`` SSE events
``--gap`` seconds apart. Each server under test (one uvicorn worker pinned to core 0) is
measured alone: N streams are opened over ``--ramp`` seconds by a raw asyncio client (on
core 1; an HTTP library client costs several times the CPU and distorts the gaps), each
read to its end. Reported per server and N: streams completed, time to the first event
(p50/p99), the largest gap between two events of a stream (p99), the server's resident
memory per open stream, and its CPU time per relayed event; then ratios against the
passthrough. Servers: the minimal aiohttp passthrough (no pool cap), the gateway with its
default config, and the gateway with a no-op per-chunk hook; with ``--workers N`` also the
gateway with N workers on every core (sharing core 1 with the client and the upstream), with
``--granian`` the gateway served by granian. One run drifts by 10-25% in CPU per event on this
shared machine, so every number is the median of ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, cpu_seconds, free_port, server

UVICORN = [PY, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
           b"content-length: %d\r\n\r\n%s")
BODY = b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Stream, please."}]}'


def paced_upstream(port: int, events: int, gap: float) -> None:
    """Serve forever: every request gets ``events`` chunk events ``gap`` apart, then [DONE]."""
    import uvloop

    event = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model",'
             b'"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}\n\n')
    framed = b"%x\r\n%s\r\n" % (len(event), event)
    done = b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                at = headers.lower().find(b"content-length:")
                length = int(headers[at + 15:headers.find(b"\r\n", at)]) if at >= 0 else 0
                await reader.readexactly(length)
                writer.write(head)
                for _ in range(events):
                    await asyncio.sleep(gap)
                    writer.write(framed)
                writer.write(done)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096, limit=2**20)
        async with srv:
            await srv.serve_forever()

    uvloop.run(serve())


async def one_stream(port: int, delay: float, out: list[tuple[float, float, bool]]) -> None:
    await asyncio.sleep(delay)
    began = time.perf_counter()
    first = gap = 0.0
    ok = False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        writer.write(REQUEST % (len(BODY), BODY))
        last = None
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            if b"data: " in data:
                if last is None:
                    first = now - began
                else:
                    gap = max(gap, now - last)
                last = now
            if b"[DONE]" in data:
                ok = True
                break
        writer.close()
    except OSError:
        pass
    out.append((first, gap, ok))


async def drive(port: int, streams: int, ramp: float) -> list[tuple[float, float, bool]]:
    out: list[tuple[float, float, bool]] = []
    await asyncio.gather(*(one_stream(port, ramp * i / streams, out) for i in range(streams)))
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (granian serves from a worker process of its own)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += tree(int(child))
    return found


def rss_kb(pid: int) -> int:
    total = 0
    for member in tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(member) for member in tree(pid))


def measure(port: int, pid: int, streams: int, ramp: float, events: int) -> dict[str, float]:
    import uvloop

    base_rss, cpu = rss_kb(pid), tree_cpu(pid)
    peak = [base_rss]

    async def run() -> list[tuple[float, float, bool]]:
        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], rss_kb(pid))
                await asyncio.sleep(0.25)

        sampler = asyncio.ensure_future(sample())
        try:
            return await drive(port, streams, ramp)
        finally:
            sampler.cancel()

    client = resource.getrusage(resource.RUSAGE_SELF)
    results = uvloop.run(run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    done = [r for r in results if r[2]]
    firsts = sorted(r[0] for r in done) or [float("nan")]
    gaps = sorted(r[1] for r in done) or [float("nan")]
    used = tree_cpu(pid) - cpu
    return {"done": len(done), "ttfb50": statistics.median(firsts) * 1000,
            "ttfb99": firsts[int(len(firsts) * 0.99) - 1 if len(firsts) > 1 else 0] * 1000,
            "gap99": gaps[int(len(gaps) * 0.99) - 1 if len(gaps) > 1 else 0] * 1000,
            "kb": (peak[0] - base_rss) / streams, "us_event": used / max(1, len(done) * events) * 1e6,
            "client_s": client_cpu, "server_s": used}


def profiler(pid: int, args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` (on the client's core, never stopping the server) for the run's length."""
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = max(1, int(args.ramp + args.events * args.gap))
    return subprocess.Popen(["taskset", "-c", "1", str(Path(PY).parent / "py-spy"), "record", "--pid", str(pid),
                             "--nonblocking", "--rate", "250", "--duration", str(seconds), "--format", "raw",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", default="500,2000", help="comma-separated open-stream counts")
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.1)
    parser.add_argument("--ramp", type=float, default=2.0)
    parser.add_argument("--granian", action="store_true", help="also the gateway (default config) under granian")
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many interleaved rounds")
    parser.add_argument("--workers", type=int, default=0, help="also the gateway (default config) with this many "
                        "workers, on every core (the client shares one with them)")
    parser.add_argument("--profile", type=Path, help="py-spy each server while it is measured: folded stacks in "
                        "this directory, and a summary printed (bench/profile.py's)")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the client holds a socket per stream
    up = free_port()
    import multiprocessing

    upstream = multiprocessing.Process(target=paced_upstream, args=(up, args.events, args.gap), daemon=True)
    upstream.start()
    os.sched_setaffinity(upstream.pid, {1})  # type: ignore[arg-type]
    os.sched_setaffinity(0, {1})
    time.sleep(0.5)
    models = (f"model_list:\n  - model_name: bench-model\n    litellm_params: {{model: openai/bench-model, "
              f"api_base: http://127.0.0.1:{up}/v1, api_key: sk-bench}}\n")
    configs = {"asgi-llm (default)": models,
               "asgi-llm (per-chunk hook)": models + "litellm_settings:\n  callbacks: bench.noop_hooks.chunk_only\n"}
    counts = [int(n) for n in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, list[str], dict[str, str]]] = [
            ("passthrough (aiohttp)", [*UVICORN, "bench.passthrough:app"],
             {"BENCH_UPSTREAM": f"http://127.0.0.1:{up}", "BENCH_CLIENT": "aiohttp", "BENCH_POOL_LIMIT": "0"})]
        for name, text in configs.items():
            path = Path(tmp) / f"{len(targets)}.yaml"
            path.write_text(text)
            targets.append((name, [PY, "-m", "asgi_llm", "--config", str(path), "--log-level", "warning"], {}))
        if args.granian:  # the same app, served by granian instead of uvicorn (httptools, uvloop)
            path = Path(tmp) / "granian.yaml"
            path.write_text(models)
            granian = [str(Path(PY).parent / "granian"), "--interface", "asgi", "--loop", "uvloop", "--factory",
                       "--no-log", "--backlog", "4096", "asgi_llm.gateway:app_from_env"]
            targets.append(("asgi-llm (default, granian)", granian, {"ASGI_LLM_CONFIG": str(path)}))
        if args.workers:  # uvicorn's supervisor and N workers sharing one socket, every core allowed
            path = Path(tmp) / "workers.yaml"
            path.write_text(models)
            targets.append((f"asgi-llm (default, {args.workers} workers)",
                            [PY, "-m", "asgi_llm", "--config", str(path), "--log-level", "warning", "--workers",
                             str(args.workers)], {}))
        cores = ",".join(str(c) for c in range(os.cpu_count() or 1))
        runs: dict[str, dict[int, list[dict[str, float]]]] = {}
        # Rounds interleave the servers, so a slow spell of this shared machine hits them alike; a fresh
        # process per measurement, so each starts from the same memory
        for round_ in range(args.rounds):
            for name, cmd, env in targets:
                for n in counts:
                    port = free_port()
                    with ExitStack() as stack:
                        core = cores if "workers)" in name else "0"
                        pid = stack.enter_context(server([*cmd, "--port", str(port)], port, core, env))
                        spy = (profiler(pid, args, args.profile / f"{name}.{n}.folded")
                               if args.profile and round_ == 0 else None)
                        runs.setdefault(name, {}).setdefault(n, []).append(measure(port, pid, n, args.ramp,
                                                                                   args.events))
                        if spy is not None:
                            spy.wait(30)
        results = {name: {n: {k: statistics.median(r[k] for r in measured) for k in measured[0]}
                          for n, measured in rows.items()} for name, rows in runs.items()}
    upstream.terminate()
    if args.profile:
        from bench.profile import report

        for folded in sorted(args.profile.glob("*.folded")):
            print(f"\n## {folded.stem}")
            report(folded, 15)
    print(f"\nopen streams: {args.events} events {args.gap * 1000:.0f} ms apart, opened over {args.ramp:g} s; "
          f"one worker on one core unless named; medians of {args.rounds} rounds; CPU s: the server's, client: the "
          "load generator's (on core 1, beside the upstream)")
    print(f"{'server':<28}{'streams':>8}{'done':>7}{'TTFB p50':>10}{'p99':>9}{'gap p99':>9}{'KB/str':>8}"
          f"{'us/event':>10}{'CPU s':>7}{'client':>8}")
    for name, rows in results.items():
        for n, r in rows.items():
            print(f"{name:<28}{n:>8}{r['done']:>7.0f}{r['ttfb50']:>8.1f}ms{r['ttfb99']:>7.0f}ms{r['gap99']:>7.0f}ms"
                  f"{r['kb']:>8.1f}{r['us_event']:>10.1f}{r['server_s']:>7.1f}{r['client_s']:>8.1f}")
    floor = results["passthrough (aiohttp)"]
    print("\nagainst the passthrough (TTFB p50 ratio, streams completed, CPU per event ratio):")
    for name, rows in results.items():
        if name.startswith("asgi-llm"):
            for n, r in rows.items():
                f = floor[n]
                print(f"  {name:<26} {n:>6}: TTFB {r['ttfb50'] / f['ttfb50']:5.2f}x, done {r['done']:.0f}/"
                      f"{f['done']:.0f}, us/event {r['us_event'] / f['us_event']:5.2f}x")


if __name__ == "__main__":
    main()
