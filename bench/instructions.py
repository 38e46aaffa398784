"""``make bench``, part two: CPU instructions per request, counted by valgrind (callgrind).

A served run on a shared machine drifts by several points between runs, too much to tell
whether a hook costs 4% or 6%. Instructions are counted, not timed: the same code, inputs
and environment give the same count whatever else the machine does. So each gateway
scenario of ``run.py`` also runs in-process under callgrind: the real stack (the real
aiohttp upstream client against the real fast upstream on 127.0.0.1), driven with ASGI
calls at 64 (chat) or 16 (stream) at once. After a warm-up the counters are zeroed, ``N``
requests run, and the counters are dumped: the count covers only those requests.

Instructions are not time: a path that misses the CPU cache or mispredicts branches costs
more per instruction. With ``--cycles`` callgrind also simulates the caches and branch
predictors (the run takes about twice as long), and each scenario gets *estimated cycles*
too, callgrind's own estimate (as KCachegrind computes it):
``Ir + 10 x (L1 misses + mispredicted branches) + 100 x last-level misses``. HTTP parsing by
the server is in neither. The ratios printed are ``no hooks / scenario``, what the throughput
ratio would be if time followed the count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import CHAT, PY, ROOT, free_port, gateway_configs, redis_server, server

KINDS = (("chat c=64", False, 64), ("stream c=16", True, 16))


async def _one(app: Any, body: bytes) -> None:
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/chat/completions",
             "root_path": "", "query_string": b"", "state": {},
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"authorization", b"Bearer sk-bench")]}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves; cancelled when the call ends
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"bench request failed with {message['status']}")

    await app(scope, receive, send)


async def _drive(app: Any, body: bytes, count: int, concurrency: int) -> None:
    todo = iter(range(count))

    async def worker() -> None:
        for _ in todo:
            await _one(app, body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    for _ in range(20):  # let the logging queue deliver what the last calls put
        await asyncio.sleep(0)


def child(config: str, extra: str, stream: bool, concurrency: int, count: int) -> None:
    """Runs under valgrind: build the gateway, warm up, count ``count`` requests."""
    import uvloop

    from asgi_llm.gateway import create_app, tune_gc

    app = create_app(config, warn=False)
    body = (CHAT % ((',"stream":true' if stream else "") + extra)).encode()
    control = shutil.which("callgrind_control") or "callgrind_control"

    async def main() -> None:
        await _drive(app, body, 500, concurrency)
        tune_gc()  # the server's GC settings, as `asgi-llm` workers use
        await _drive(app, body, 500, concurrency)
        # blocking on purpose: nothing runs while the counters are zeroed or dumped
        subprocess.run([control, "-z", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221
        await _drive(app, body, count, concurrency)
        await app.log_queue.drain(30)  # the callbacks' work is part of what a call costs
        subprocess.run([control, "-d", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221
        await app.aclose()

    uvloop.run(main())


def estimate(events: dict[str, int]) -> int:
    """Callgrind's cycle estimate (KCachegrind's formula) from a dump's event totals."""
    l1 = events["I1mr"] + events["D1mr"] + events["D1mw"]
    last = events["ILmr"] + events["DLmr"] + events["DLmw"]
    return events["Ir"] + 10 * (l1 + events["Bcm"] + events["Bim"]) + 100 * last


def count_one(config: str, extra: str, stream: bool, concurrency: int, count: int, out: Path,
              cycles: bool) -> tuple[float, float]:
    """Instructions and estimated cycles (0 without ``cycles``) per request."""
    simulate = ["--cache-sim=yes", "--branch-sim=yes"] if cycles else []
    cmd = ["valgrind", "--tool=callgrind", *simulate, f"--callgrind-out-file={out}", PY, __file__, "--child",
           config, "--extra", extra, "--concurrency", str(concurrency), "--requests", str(count)]
    subprocess.run(cmd + (["--stream"] if stream else []), cwd=ROOT, check=True, capture_output=True)
    dumped = Path(f"{out}.1").read_text(errors="replace")  # the dump after the counted requests
    names = re.search(r"^events: (.+)$", dumped, re.M)
    found = re.search(r"^(?:summary|totals): ([\d ]+)$", dumped, re.M)
    if names is None or found is None:
        raise RuntimeError(f"no event counts in {out}.1")
    events = dict(zip(names.group(1).split(), map(int, found.group(1).split()), strict=True))
    return events["Ir"] / count, estimate(events) / count if cycles else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="counted per scenario")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the median counts")
    parser.add_argument("--only", default="", help="comma-separated words, as in run.py")
    parser.add_argument("--cycles", action="store_true", help="simulate caches and branches: estimated cycles too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="", help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.extra, args.stream, args.concurrency, args.requests)
        return
    if not shutil.which("valgrind"):
        sys.exit("instruction counts need valgrind (make bench installs it from Debian)")
    wanted = [w for w in args.only.split(",") if w]
    with tempfile.TemporaryDirectory() as tmp:
        up_port, redis_port = free_port(), free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        with server([PY, "bench/fast_upstream.py", "--port", str(up_port)], up_port, "1"), \
                server(redis_server(redis_port), redis_port, "1"):
            jobs = {}
            with ThreadPoolExecutor(2) as pool:  # one valgrind per core
                for n, (who, (text, extra)) in enumerate(gateway_configs(upstream, redis_port).items()):
                    if wanted and who != "asgi-llm (no hooks)" and not any(w in who for w in wanted):
                        continue
                    config = Path(tmp) / f"{n}.yaml"
                    config.write_text(text)
                    for kind, stream, conc in KINDS:
                        jobs[who, kind] = [pool.submit(count_one, str(config), extra, stream, conc, args.requests,
                                                       Path(tmp) / f"cg.{n}.{conc}.{r}", args.cycles)
                                           for r in range(args.repeat)]
            results = {key: [job.result() for job in runs] for key, runs in jobs.items()}
    print(f"\nPer request (callgrind: {args.requests} requests in-process after a warm-up, median of {args.repeat}):"
          " CPU instructions" + (", and estimated cycles (instructions, cache misses, mispredicted branches)"
                                 if args.cycles else ""))
    print(f"{'server':<32}{'scenario':<14}{'instructions':>13}{'added':>9}{'ratio':>8}"
          + (f"{'est. cycles':>13}{'added':>10}{'ratio':>8}" if args.cycles else ""))
    median = {key: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
              for key, runs in results.items()}
    for (who, kind), (ir, cycles) in median.items():
        base_ir, base_cycles = median["asgi-llm (no hooks)", kind]
        print(f"{who:<32}{kind:<14}{ir:>13,.0f}{ir - base_ir:>+9,.0f}{base_ir / ir:>8.1%}"
              + (f"{cycles:>13,.0f}{cycles - base_cycles:>+10,.0f}{base_cycles / cycles:>8.1%}" if args.cycles else ""))


if __name__ == "__main__":
    main()
