"""A real hub for tests: `rthub serve` in a subprocess on a free port, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hub.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


class HubProcess:
    def __init__(self, redis_url: str, prefix: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.prefix = prefix
        self.env = {**os.environ, "RTHUB_REDIS_URL": redis_url, "RTHUB_REDIS_PREFIX": prefix, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/events"

    def start(self, timeout: float = 20) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hub exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("hub did not become healthy")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        self.process = None
        return code
