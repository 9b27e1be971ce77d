"""Statements per second into a real LRS (Ralph, file backend) through the hub, against plain httpx.

    python -m bench.lrs [--events 2000] [--batch 100]

A private redis-server, two Ralph servers (the tests' `RalphServer`: own virtualenv, file backend,
one Basic user) so neither run reads the other's statements, and one `WebhookRouter` fed by the
real live feed, as in `bench.webhooks`. The hub run publishes `--events` simulated LMS events from a
separate process to an `lrs` client with batches of `--batch` while the client is paused (so the
whole run is queued, as the baseline's batches are prepared), then resumes it and times the drain
until the last event is acknowledged.
The baseline renders the same events (same anonymous actors, so the same statements), cuts them into
the same batches with the same body builder, and POSTs them one after the other with one
`httpx.AsyncClient` to the second Ralph. Both read the count back with `GET /xAPI/statements`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from bench.webhooks import Hub
from hub.config import Settings
from hub.delivery.webhook.formats.lrs import LrsSender
from hub.delivery.webhook.outbox import Item
from hub.dev.embedded import EmbeddedRedis
from hub.ingest import Entry
from hub.ingest.redis import RedisBroker
from rthub_lms import keys as rkeys
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer


async def through_hub(settings: Settings, ralph: RalphServer, events: int, batch: int) -> tuple[float, int, Hub]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    registry = ClientRegistry(redis, settings)
    client, _ = await registry.create(
        name="bench lrs", type="enterprise", translator="xapi", delivery="lrs", endpoint_url=ralph.endpoint,
        endpoint_username=ralph.username, endpoint_password=ralph.password, grant=[{}],
        webhook_batch_max=batch, webhook_batch_wait=0.05,
    )
    await registry.pause_endpoint(client.client_id, "bench: queue the run first")
    async with Hub(redis, settings) as hub:
        await hub.publish(events)
        while await redis.xlen(rkeys.outbox(settings, client.client_id)) < events:
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        await registry.rotate_endpoint_credential(client.client_id, endpoint_password=ralph.password)
        await hub.until_delivered(events, 600)
        elapsed = time.perf_counter() - started
        counts = hub.router.delivery_counts()
    await redis.aclose()
    stored = len(ralph.statements())
    print(f"hub: {counts['delivered']} events acknowledged, {counts['dead_lettered']} dead letters, "
          f"{counts['failed_attempts']} failed attempts")
    return stored / elapsed, stored, hub


async def frames(settings: Settings, hub: Hub) -> list[Item]:
    """The published entries rendered as the hub rendered them, as queue items."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    broker = RedisBroker(redis, settings)
    items: list[Item] = []
    after = "0-0"
    while page := await broker.history(after, 500):
        for entry in page:
            if isinstance(entry, Entry):
                frame = await hub.render(entry, "xapi", "enterprise")
                if frame is not None:
                    items.append(Item("", entry.cursor, entry.cursor, frame.text))
        after = page[-1].cursor
    await redis.aclose()
    return items


async def plain_loop(ralph: RalphServer, items: list[Item], batch: int) -> tuple[float, int]:
    sender = LrsSender("")
    bodies = [sender.body(items[start:start + batch]) for start in range(0, len(items), batch)]
    headers = {**sender.headers}
    del headers["authorization"]
    async with httpx.AsyncClient(auth=(ralph.username, ralph.password), timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            (await client.post(f"{ralph.endpoint}statements", content=body, headers=headers)).raise_for_status()
        elapsed = time.perf_counter() - started
    stored = len(ralph.statements())
    return stored / elapsed, stored


def main() -> int:
    parser = argparse.ArgumentParser(description="statements/s into Ralph: hub vs plain httpx")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rthub-bench-lrs-") as tmp, EmbeddedRedis() as redis_server:
        lrs_for_hub, lrs_for_loop = RalphServer(Path(tmp) / "hub"), RalphServer(Path(tmp) / "loop")
        for server in (lrs_for_hub, lrs_for_loop):
            server.start()
        try:
            settings = Settings(redis_url=redis_server.url, redis_prefix="blrs:", webhook_allow_private=True,
                                endpoint_key_file=str(Path(tmp) / "endpoint.key"))
            hub_rate, hub_stored, hub = asyncio.run(through_hub(settings, lrs_for_hub, args.events, args.batch))
            items = asyncio.run(frames(settings, hub))
            loop_rate, loop_stored = asyncio.run(plain_loop(lrs_for_loop, items, args.batch))
        finally:
            for server in (lrs_for_hub, lrs_for_loop):
                server.stop()
    print(f"{args.events} events -> {len(items)} event frames; batches of {args.batch}")
    print(f"through the hub : {hub_rate:8.0f} statements/s ({hub_stored} stored)")
    print(f"plain httpx loop: {loop_rate:8.0f} statements/s ({loop_stored} stored)")
    print(f"ratio hub / loop: {hub_rate / loop_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
