"""Token endpoint throughput and latency against a real uvicorn, next to a trivial JSON endpoint.

    python -m bench.token [--seconds 5] [--concurrency 8] [--repeat 3]

Starts a private redis-server and one uvicorn worker (subprocess) serving `auth_routes` plus
`GET /baseline`; drives both with httpx over real sockets, alternating one-second slices of each so
that load from other processes on the machine falls on both alike, and prints requests/s, p50 and
p99 and the ratio to the baseline, with the server process's CPU time per request of each (which the
machine's load does not change: on a shared machine the steadier of the two ratios); medians of
`--repeat` runs. Issue 14 asks for a ratio of at least 0.5: client secrets are checked with
SHA-256 and authlib runs on the event loop, so a token costs the failure-budget read, a hash and one
ES256 signature (the client record is read once a second at most: `auth.client_cache`), as in the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.client_cache import ClientCache
from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from auth.routes import auth_routes
from hub.config import Settings
from hub.control.changes import ChangeFollower
from tests.servers import RedisServer, free_port


def app_factory() -> Starlette:
    """The served app (uvicorn --factory); settings come from RTHUB_* variables set by the parent."""
    settings = Settings.from_env()
    redis = aioredis.Redis.from_url(settings.redis_url)

    async def baseline(request: Request) -> Response:
        return JSONResponse({"ok": True})

    keys = SigningKeys(settings, redis)
    clients = ClientCache(ClientRegistry(redis, settings))
    changes = ChangeFollower(redis, settings)  # as in the hub: change notices drop cached client records
    changes.register(clients.forget, clients.clear)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await keys.start()
        changes.start()
        yield
        await changes.close()

    routes = [Route("/baseline", baseline), *auth_routes(settings, redis, keys, clients)]
    return Starlette(routes=routes, lifespan=lifespan)


async def drive(
    url: str, seconds: float, concurrency: int, request: dict, expect: int = 200
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.request(url=url, **request)
            latencies.append(time.perf_counter() - started)
            if response.status_code != expect:
                raise RuntimeError(f"{url}: {response.status_code} {response.text}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


@dataclass
class Slices:
    """One endpoint's share of a run: requests/s over its own slices, latencies, server CPU seconds."""

    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_us(self) -> float:
        """The server's CPU time per request (user + system), in µs: what the machine's load does not change."""
        return self.cpu / len(self.latencies) * 1e6


async def alternate(
    base: str, seconds: float, concurrency: int, token_request: dict, server: psutil.Process
) -> tuple[Slices, Slices]:
    """Both endpoints in alternating one-second slices; requests/s over each one's own slices."""
    baseline, token = Slices(), Slices()
    for _ in range(max(1, round(seconds))):
        for slices, url, request in ((baseline, f"{base}/baseline", {"method": "GET"}),
                                     (token, f"{base}/oauth/token", token_request)):
            before = _cpu(server)
            rps, latencies = await drive(url, 1.0, concurrency, request)
            slices.cpu += _cpu(server) - before
            slices.seconds += len(latencies) / rps
            slices.latencies += latencies
    return baseline, token


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def summary(name: str, slices: Slices) -> str:
    p50 = statistics.median(slices.latencies) * 1000
    p99 = statistics.quantiles(slices.latencies, n=100)[98] * 1000
    count = len(slices.latencies)
    return (f"{name:<18} {slices.rps:>9.1f} req/s   p50 {p50:>7.2f} ms   p99 {p99:>7.2f} ms   "
            f"server CPU {slices.cpu_us:>6.0f} µs/request   ({count} requests)")


async def create_client(settings: Settings) -> tuple[str, str]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        client, secret = await ClientRegistry(redis, settings).create(name="bench", type="other", translator="xapi")
        return client.client_id, secret
    finally:
        await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description="token endpoint benchmark")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the ratios reported are their median")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        redis_server = RedisServer(Path(workdir) / "redis")
        redis_server.start()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = Settings(
            redis_url=redis_server.url,
            redis_prefix="bench:",
            issuer=base,
            data_dir=workdir,
        )
        env = {
            **os.environ,
            "RTHUB_REDIS_URL": settings.redis_url,
            "RTHUB_REDIS_PREFIX": settings.redis_prefix,
            "RTHUB_ISSUER": settings.issuer,
            "RTHUB_DATA_DIR": settings.data_dir,
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.token:app_factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        server = subprocess.Popen(command, env=env)
        try:
            _wait_for(f"{base}/baseline")
            client_id, secret = asyncio.run(create_client(settings))
            token_request = {
                "method": "POST",
                "data": {"grant_type": "client_credentials"},
                "auth": (client_id, secret),
            }
            load = f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per endpoint, 1 uvicorn worker"
            print(f"token endpoint benchmark: {load}, {args.repeat} runs, load average {os.getloadavg()[0]:.1f}")
            throughput, cpu = [], []
            for _ in range(args.repeat):
                baseline, token = asyncio.run(
                    alternate(base, args.seconds, args.concurrency, token_request, psutil.Process(server.pid))
                )
                print(summary("GET /baseline", baseline))
                print(summary("POST /oauth/token", token))
                throughput.append(token.rps / baseline.rps)
                cpu.append(baseline.cpu_us / token.cpu_us)
            print(f"token/baseline throughput ratio: {statistics.median(throughput):.3f} (median of {args.repeat}: "
                  f"{', '.join(f'{ratio:.3f}' for ratio in throughput)})")
            print(f"baseline/token server CPU per request: {statistics.median(cpu):.3f} (median of {args.repeat}: "
                  f"{', '.join(f'{ratio:.3f}' for ratio in cpu)})")
        finally:
            server.terminate()
            server.wait(timeout=10)
            redis_server.stop()
    return 0


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server at {url} did not start")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
