"""Publish -> receive latency through the real hub, one subscriber.

    python -m bench.latency [--events 1000] [--rate 500]

Starts a private redis-server and `rthub serve`, connects one WebSocket subscriber (a real OAuth
client), publishes through `RealtimeBackend` at a fixed rate and records, per cursor, the send time
and the receive time (same clock). Prints p50/p90/p99/max and counts lost or duplicated frames.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import orjson
import redis.asyncio as aioredis
import websockets

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.demo import fetch_token
from hub.dev.embedded import EmbeddedRedis, free_port
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend


def start_hub(redis_url: str, port: int, key_dir: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "RTHUB_REDIS_URL": redis_url, "RTHUB_REDIS_PREFIX": "bench:",
        "RTHUB_ISSUER": f"http://127.0.0.1:{port}", "RTHUB_DATA_DIR": key_dir,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--log-level", "warning"], env=env
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("hub did not start")


def issue_token(redis_url: str, port: int) -> str:
    """A real OAuth client (grant: everything) and its access token."""
    settings = Settings.from_env(redis_url=redis_url, redis_prefix="bench:")

    async def create() -> tuple[str, str]:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            client, secret = await ClientRegistry(redis, settings).create(
                name="bench", type="adaptive", translator="xapi", grant=[{}]
            )
        finally:
            await redis.aclose()
        return client.client_id, secret

    client_id, secret = asyncio.run(create())
    return fetch_token(f"http://127.0.0.1:{port}", client_id, secret)


async def measure(
    url: str, token: str, backend: RealtimeBackend, events: list[dict], rate: float
) -> tuple[dict, dict]:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    duplicates = 0
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.recv()
        await ws.send('{"type": "subscribe"}')
        await asyncio.sleep(0.1)

        async def receive() -> None:
            nonlocal duplicates
            while len(received) < len(events):
                frame = orjson.loads(await ws.recv())
                if frame["cursor"] in received:
                    duplicates += 1
                received[frame["cursor"]] = time.perf_counter()

        receiver = asyncio.create_task(receive())
        interval = 1 / rate
        start = time.perf_counter()
        for index, event in enumerate(events):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            before = time.perf_counter()
            cursor = backend.send(event)
            sent[cursor] = before
        try:
            await asyncio.wait_for(receiver, 10)
        except TimeoutError:
            receiver.cancel()
    return sent, {"received": received, "duplicates": duplicates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    lms = SimulatedLMS(seed=11)
    events = [lms.next_event() for _ in range(args.events)]
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as key_dir:
        port = free_port()
        hub = start_hub(server.url, port, key_dir)
        try:
            token = issue_token(server.url, port)
            backend = RealtimeBackend(redis_url=server.url, redis_prefix="bench:")
            sent, result = asyncio.run(
                measure(f"ws://127.0.0.1:{port}/v1/events", token, backend, events, args.rate)
            )
        finally:
            hub.terminate()
            hub.wait()
    received = result["received"]
    latencies = sorted((received[c] - sent[c]) * 1000 for c in sent if c in received)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"events {len(events)} at {args.rate:g}/s -> received {len(received)}, "
          f"lost {len(sent) - len(received)}, duplicated {result['duplicates']}")
    print(f"latency ms: p50 {quantiles[49]:.2f}  p90 {quantiles[89]:.2f}  p99 {quantiles[98]:.2f}  "
          f"max {latencies[-1]:.2f}")


if __name__ == "__main__":
    main()
