"""Token endpoint throughput and latency against a real uvicorn, next to a trivial JSON endpoint.

    python -m bench.token [--seconds 5] [--concurrency 8]

Starts a private redis-server and one uvicorn worker (subprocess) serving `auth_routes` plus
`GET /baseline`; drives both with httpx over real sockets, alternating one-second slices of each so
that load from other processes on the machine falls on both alike, and prints requests/s, p50 and
p99 and the ratio to the baseline. Issue 14 asks for a ratio of at least 0.5: client secrets are checked with
SHA-256 and authlib runs on the event loop, so a token costs a Redis read, a hash and one ES256
signature.
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
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from auth.routes import auth_routes
from hub.config import Settings
from tests.servers import RedisServer, free_port


def app_factory() -> Starlette:
    """The served app (uvicorn --factory); settings come from RTHUB_* variables set by the parent."""
    settings = Settings.from_env()
    redis = aioredis.Redis.from_url(settings.redis_url)

    async def baseline(request: Request) -> Response:
        return JSONResponse({"ok": True})

    keys = SigningKeys(settings, redis)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await keys.start()
        yield

    return Starlette(routes=[Route("/baseline", baseline), *auth_routes(settings, redis, keys)], lifespan=lifespan)


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


async def alternate(
    base: str, seconds: float, concurrency: int, token_request: dict
) -> tuple[float, list[float], float, list[float]]:
    """Both endpoints in alternating one-second slices; requests/s over each one's own slices."""
    base_lat: list[float] = []
    token_lat: list[float] = []
    base_time = token_time = 0.0
    for _ in range(max(1, round(seconds))):
        rps, latencies = await drive(f"{base}/baseline", 1.0, concurrency, {"method": "GET"})
        base_time += len(latencies) / rps
        base_lat += latencies
        rps, latencies = await drive(f"{base}/oauth/token", 1.0, concurrency, token_request)
        token_time += len(latencies) / rps
        token_lat += latencies
    return len(base_lat) / base_time, base_lat, len(token_lat) / token_time, token_lat


def summary(name: str, rps: float, latencies: list[float]) -> str:
    p50 = statistics.median(latencies) * 1000
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    count = len(latencies)
    return f"{name:<18} {rps:>9.1f} req/s   p50 {p50:>7.2f} ms   p99 {p99:>7.2f} ms   ({count} requests)"


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
            print(f"token endpoint benchmark: {load}")
            base_rps, base_lat, token_rps, token_lat = asyncio.run(
                alternate(base, args.seconds, args.concurrency, token_request)
            )
            print(summary("GET /baseline", base_rps, base_lat))
            print(summary("POST /oauth/token", token_rps, token_lat))
            print(f"token/baseline throughput ratio: {token_rps / base_rps:.3f}")
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
