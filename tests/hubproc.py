"""A real hub for tests: `rthub serve` in a subprocess on a free port, killable and restartable."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.embedded import free_port
from hub.redis import client as redis_client

ROOT = Path(__file__).resolve().parents[1]


class HubProcess:
    def __init__(self, redis_url: str, prefix: str, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.redis_url = redis_url
        self.prefix = prefix
        self.key_dir = tempfile.TemporaryDirectory(prefix="rthub-keys-")
        self.env = {
            **os.environ,
            "RTHUB_REDIS_URL": redis_url,
            "RTHUB_REDIS_PREFIX": prefix,
            "RTHUB_ISSUER": f"http://127.0.0.1:{self.port}",
            "RTHUB_SIGNING_KEY_FILE": str(Path(self.key_dir.name) / "signing-key.pem"),
            "RTHUB_ENDPOINT_KEY_FILE": str(Path(self.key_dir.name) / "endpoint.key"),
            **(env or {}),
        }
        self.settings = Settings.from_env(self.env)
        self.process: subprocess.Popen[bytes] | None = None
        if workers > 1:  # made up front, so the workers do not race to create their own
            SigningKeys(self.env["RTHUB_SIGNING_KEY_FILE"])

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

    def start(self, timeout: float = 20) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port), "--log-level", "warning",
             "--workers", str(self.workers)],
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

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        self.process = None
        return code
