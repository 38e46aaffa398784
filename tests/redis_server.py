"""A real ``redis-server`` for tests, on a free 127.0.0.1 port, owned by the fixture.

It can be stopped and started again on the same port (a restart), or paused with
SIGSTOP (a stalled Redis). Missing ``redis-server`` fails the suite: ``make test``
installs it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import redis


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make test` installs it (Debian's redis-server)")
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        self.client.connection_pool.disconnect()

    def fresh_window(self, margin: float = 8.0) -> None:
        """Wait (at most ``margin`` seconds) until the limits' 60-second window, on the Redis clock, has
        ``margin`` seconds left: a sequence that expects the Nth call refused must not straddle a
        window's end, where every counter starts again."""
        seconds, micros = self.client.time()
        left = 60 - (seconds % 60 + micros / 1e6)
        if left < margin:
            time.sleep(left + 0.05)  # a clock's instant, not a condition polled: the window's end is known

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
