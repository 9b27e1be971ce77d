"""Real hubs for tests, on a free port and this test's key prefix.

`InProcessHub` (the default `hub` fixture): the hub's app under uvicorn in a thread of the test process,
as `rthub serve` configures it; it starts in milliseconds. `HubProcess`: `rthub serve` in a subprocess,
for tests that stop, kill or restart the hub, run `--workers`, or need it in a process of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from auth.registry import ClientRegistry
from hub.app import create_app, uvicorn_options
from hub.config import Settings
from hub.dev.embedded import free_port
from hub.lifetime import die_with_parent
from hub.redis import client as redis_client
from tests.waiting import until_serving, wait_until

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT = 30.0


class Hub:
    """What every test hub offers: its addresses, its metrics, and OAuth clients in its registry."""

    def __init__(self, redis_url: str, prefix: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.prefix = prefix
        self.env = {  # key files: the default data directory (the test run's, `tests/conftest.py`)
            **os.environ,
            "RTHUB_REDIS_URL": redis_url,
            "RTHUB_REDIS_PREFIX": prefix,
            "RTHUB_ISSUER": f"http://127.0.0.1:{self.port}",
            **(env or {}),
        }
        self.settings = Settings.from_env(self.env)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/events"

    def metric(self, name: str) -> float:
        """The samples named `name` on /metrics, summed over their labels (a counter's name ends in
        `_total`); a name the hub does not expose fails the test."""
        text = httpx.get(f"{self.http}/metrics", timeout=5).text
        values = [sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples if sample.name == name]
        if not values:
            raise AssertionError(f"{name} is missing from /metrics")
        return sum(values)

    def client(self, **fields: Any) -> tuple[str, str]:
        """Register an OAuth client straight in the registry; returns (client id, secret).

        Defaults: a consumer of type `other` on xAPI whose grant sees every event.
        """
        fields = {"name": "test consumer", "type": "other", "translator": "xapi", "grant": [{}], **fields}

        async def create() -> tuple[str, str]:
            redis = redis_client(self.redis_url)
            try:
                client, secret = await ClientRegistry(redis, self.settings).create(**fields)
            finally:
                await redis.aclose()
            return client.client_id, secret

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, create()).result()

    def token_for(self, client_id: str, secret: str, scope: str = "events:read") -> str:
        response = httpx.post(
            f"{self.http}/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, secret),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def token(self, **fields: Any) -> str:
        """A bearer token for a new client with `fields` (see `client`)."""
        return self.token_for(*self.client(**fields))


class HubProcess(Hub):
    """`rthub serve` in a subprocess: killable and restartable."""

    def __init__(
        self, redis_url: str, prefix: str, env: dict[str, str] | None = None, workers: int = 1,
        cwd: Path = ROOT,
    ) -> None:
        super().__init__(redis_url, prefix, env)
        self.workers = workers
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        """Start `rthub serve`; it dies with this test process (a crashed worker leaves no hub running)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port), "--log-level", "warning",
             "--workers", str(self.workers)],
            cwd=self.cwd, env={**self.env, "PYTHONPATH": _import_path()}, preexec_fn=die_with_parent,
        )
        try:
            until_serving(self.process, f"{self.http}/healthz", "hub", timeout)
        except BaseException:
            self.process.kill()
            self.process.wait()
            self.process = None
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal the hub and wait for it; one that has not stopped within `timeout` (Kubernetes' default
        grace period) is killed, so it never outlives the test, and the test fails saying so."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"rthub serve did not stop within {timeout:g} s of signal {sig}; killed") from None


def _import_path() -> str:
    """This tree first, so a hub started in another working directory runs the same code."""
    return os.pathsep.join([str(ROOT), str(ROOT / "lms"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


class InProcessHub(Hub):
    """The hub in this process: `create_app` under uvicorn (the project's frame-writer protocol, the
    settings `rthub serve` gives it) in a thread with its own event loop. Stopping it runs the app's
    lifespan shutdown; a task the shutdown leaves running fails the test."""

    def __init__(self, redis_url: str, prefix: str, env: dict[str, str] | None = None) -> None:
        super().__init__(redis_url, prefix, env)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._leftover: list[str] = []

    def start(self, timeout: float = 20) -> None:
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            **uvicorn_options(self.settings),
        )
        server = self._server = uvicorn.Server(config)

        async def serve() -> None:
            await server.serve()
            current = asyncio.current_task()
            self._leftover = [task.get_name() for task in asyncio.all_tasks() if task is not current]

        def run() -> None:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(serve())

        thread = self._thread = threading.Thread(target=run, name=f"hub-{self.port}", daemon=True)
        thread.start()
        wait_until(lambda: server.started or not thread.is_alive(), timeout, "hub did not start")
        if not server.started:
            raise RuntimeError("hub did not start (see the log above)")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=30)
        alive = self._thread.is_alive()
        self._server = self._thread = None
        gc.unfreeze()  # the app froze everything at start (`gc.freeze`); let this test's garbage go
        assert not alive, "the in-process hub did not shut down within 30 s"
        assert not self._leftover, f"the hub's shutdown left tasks running: {self._leftover}"

