"""Where a gateway scenario's CPU goes: py-spy samples one gateway process under wrk's load.

    python bench/profile.py --scenario "full stack" --load "chat c=64"

Same layout as ``run.py``: the gateway on core 0, the fast upstream, wrk and py-spy on core 1.
py-spy reads the process from outside (``--nonblocking``: it never stops the gateway), so the
profile costs the gateway nothing but cache misses. It prints the share of on-CPU samples by
package (our code, the server, the client, the event loop...), then the functions with the most
samples of their own (self) and under them (inclusive). ``--raw FILE`` keeps the folded stacks
(speedscope and flamegraph.pl read them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, ROOT, free_port, gateway_configs, server, wrk_script

LOADS = {"chat c=1": (1, False), "chat c=64": (64, False), "stream c=16": (16, True)}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# a frame's package, by the first of these its file path holds
PACKAGES = [("middlewares/", "middlewares (policy)"), ("asgi_llm/", "asgi_llm (mechanism)"),
            ("bench/", "bench hooks"), ("uvicorn/", "uvicorn"), ("aiohttp/", "aiohttp"), ("msgspec", "msgspec"),
            ("starlette/", "starlette"), ("prometheus_client/", "prometheus_client"), ("yarl/", "yarl"),
            ("multidict/", "multidict"), ("asyncio/", "asyncio"), ("uvloop", "uvloop")]


def package(file: str) -> str:
    return next((name for part, name in PACKAGES if part in file), "other")


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        m = FRAME.match(frame)
        func, file = (m.group("func"), m.group("file")) if m else (frame, "")
        out.append((func, file.rsplit("site-packages/", 1)[-1].replace(str(ROOT) + "/", "")))
    return out


def report(raw: Path, top: int) -> None:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        stacked = frames(stack)
        func, file = stacked[-1]
        self_time[f"{func} ({file})"] += n
        packages[package(file)] += n
        for name in {f"{f} ({p})" for f, p in stacked}:
            inclusive[name] += n
    if not total:
        sys.exit("py-spy took no samples (is ptrace allowed here?)")
    print(f"\n{total} on-CPU samples\n\nself time by package:")
    for name, n in packages.most_common():
        print(f"  {n / total:6.1%}  {name}")
    for title, counts in (("self", self_time), ("inclusive", inclusive)):
        print(f"\ntop {top} functions, {title}:")
        for name, n in counts.most_common(top):
            print(f"  {n / total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="full stack", help="a word of a run.py gateway scenario's name")
    parser.add_argument("--load", default="chat c=64", choices=LOADS)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep the folded stacks here")
    args = parser.parse_args()
    up_port, port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    configs = gateway_configs(upstream)
    name = next((n for n in configs if args.scenario in n), None)
    if name is None:
        sys.exit(f"no scenario named like {args.scenario!r}: {', '.join(configs)}")
    text, extra = configs[name]
    config = Path(tempfile.mkstemp(suffix=".yaml")[1])
    config.write_text(text)
    raw = args.raw or Path(tempfile.mkstemp(suffix=".folded")[1])
    conns, stream = LOADS[args.load]
    script = wrk_script(stream, extra)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def load(seconds: int) -> str:
        return subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(script),
                               url], capture_output=True, text=True, check=True).stdout

    with server([PY, "bench/fast_upstream.py", "--port", str(up_port)], up_port, "1"), \
         server([PY, "-m", "asgi_llm", "--config", str(config), "--port", str(port), "--log-level", "warning"],
                port, "0") as pid:
        load(2)  # warm: connections, lazy imports
        driver = threading.Thread(target=load, args=(args.seconds + 2,))
        driver.start()
        subprocess.run(["taskset", "-c", "1", sys.executable.replace("python", "py-spy"), "record", "--pid", str(pid),
                        "--nonblocking", "--rate", str(args.rate), "--duration", str(args.seconds), "--format", "raw",
                        "--output", str(raw)], check=True, capture_output=True)
        driver.join()
    print(f"{name}, {args.load}, {args.seconds} s")
    report(raw, args.top)
    config.unlink()
    script.unlink()
    if args.raw is None:
        raw.unlink()


if __name__ == "__main__":
    main()
