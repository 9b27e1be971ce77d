"""Per-client webhook delivery health for the admin page and API: last delivery, failures, dead letters.

The delivering worker records outcomes in `{prefix}wh:health:{client}` (a delivery inside the fenced
acknowledgement script, `lease.FINISH_SCRIPT`; failures here); readers get one dict per client.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from hub.config import Settings
from rthub_lms import keys


async def record_failure(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> float:
    """A failed attempt; returns since when (unix s) the endpoint has been failing without a success."""
    key = keys.health(settings, client_id)
    now = f"{time.time():.3f}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hsetnx(key, "failing_since", now)
        pipe.hset(key, mapping={"last_failure_at": now, "last_error": reason})
        pipe.hincrby(key, "failed_attempts", 1)
        pipe.hget(key, "failing_since")
        *_, since = await pipe.execute()
    return float(since)


async def record_gap(redis: aioredis.Redis, settings: Settings, client_id: str) -> None:
    await redis.hincrby(keys.health(settings, client_id), "gaps", 1)


async def record_dead_letters(redis: aioredis.Redis, settings: Settings, client_id: str, events: int) -> None:
    await redis.hincrby(keys.health(settings, client_id), "dead_lettered", events)


async def delivery_health(redis: aioredis.Redis, settings: Settings, client_ids: list[str]) -> dict[str, dict]:
    """client id -> {last_delivery_at, last_failure_at, failing_since (unix s or None), last_error, delivered,
    failed_attempts, dead_lettered, overflowed, gaps}; clients that never had a webhook delivery are left out."""
    async with redis.pipeline(transaction=False) as pipe:
        for client_id in client_ids:
            pipe.hgetall(keys.health(settings, client_id))
        rows = await pipe.execute()
    health: dict[str, dict] = {}
    for client_id, row in zip(client_ids, rows, strict=True):
        if not row:
            continue
        text = {key.decode(): value.decode() for key, value in row.items()}
        health[client_id] = {
            "last_delivery_at": float(text["last_delivery_at"]) if "last_delivery_at" in text else None,
            "last_failure_at": float(text["last_failure_at"]) if "last_failure_at" in text else None,
            "failing_since": float(text["failing_since"]) if "failing_since" in text else None,
            "last_error": text.get("last_error", ""),
            "delivered": int(text.get("delivered", 0)),
            "failed_attempts": int(text.get("failed_attempts", 0)),
            "dead_lettered": int(text.get("dead_lettered", 0)),
            "overflowed": int(text.get("overflowed", 0)),
            "gaps": int(text.get("gaps", 0)),
        }
    return health
