"""Per-client webhook delivery health for the admin page and API: last delivery, failures, dead letters.

The delivering worker records outcomes in `{prefix}{client}:wh:health` (a delivery inside the fenced
acknowledgement script, `lease.FINISH_SCRIPT`; failures here) and every HTTP attempt in the capped list
`{prefix}{client}:wh:log` (time, status, latency, error); readers get one dict per client.
"""

from __future__ import annotations

import time
from typing import Annotated, TypedDict

import orjson
import redis.asyncio as aioredis

from hub.config import Settings
from rthub_lms import keys

LOG_SIZE = 50
UnixSeconds = Annotated[float, {"description": "unix seconds"}]


class DeliveryAttempt(TypedDict):
    """One attempt to deliver to a client's webhook or endpoint: an HTTP POST, or a refusal before any."""

    at: UnixSeconds
    status: Annotated[int | None, {"description": "the HTTP status; null: no answer (timeout, connection error) "
                                                  "or nothing sent"}]
    latency_ms: float
    error: str
    sent: Annotated[bool, {"description": "false: refused before any POST (DNS, the address guard, an unusable "
                                          "configuration); `error` says why"}]


class DeliveryHealth(TypedDict):
    """A client's webhook or endpoint delivery, as its delivering worker recorded it."""

    last_delivery_at: Annotated[float | None, {"description": "unix seconds"}]
    last_failure_at: Annotated[float | None, {"description": "unix seconds"}]
    failing_since: Annotated[float | None, {"description": "unix seconds of the first failure since a success"}]
    last_error: str
    delivered: int
    failed_attempts: int
    dead_lettered: int
    already_stored: int
    overflowed: int
    gaps: int


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


async def record_already_stored(redis: aioredis.Redis, settings: Settings, client_id: str, events: int) -> None:
    await redis.hincrby(keys.health(settings, client_id), "already_stored", events)


async def record_attempt(
    redis: aioredis.Redis,
    settings: Settings,
    client_id: str,
    status: int | None,
    latency: float,
    error: str,
    sent: bool = True,
) -> None:
    """Append one attempt (a POST, or with `sent` false a refusal before any) to the client's delivery log,
    keeping the last `LOG_SIZE`."""
    attempt: DeliveryAttempt = {
        "at": round(time.time(), 3), "status": status, "latency_ms": round(latency * 1000, 1), "error": error,
        "sent": sent,
    }
    row = orjson.dumps(attempt)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(keys.delivery_log(settings, client_id), row)
        pipe.ltrim(keys.delivery_log(settings, client_id), 0, LOG_SIZE - 1)
        await pipe.execute()


async def delivery_log(
    redis: aioredis.Redis, settings: Settings, client_id: str, limit: int = LOG_SIZE
) -> list[DeliveryAttempt]:
    """The client's last delivery attempts, newest first (rows written before `sent` existed were POSTs)."""
    rows = await redis.lrange(keys.delivery_log(settings, client_id), 0, limit - 1)
    return [{"sent": True, **orjson.loads(row)} for row in rows]


async def record_dead_letters(redis: aioredis.Redis, settings: Settings, client_id: str, events: int) -> None:
    await redis.hincrby(keys.health(settings, client_id), "dead_lettered", events)


async def delivery_health(
    redis: aioredis.Redis, settings: Settings, client_ids: list[str]
) -> dict[str, DeliveryHealth]:
    """client id -> its `DeliveryHealth`; clients that never had a webhook delivery are left out."""
    async with redis.pipeline(transaction=False) as pipe:
        for client_id in client_ids:
            pipe.hgetall(keys.health(settings, client_id))
        rows = await pipe.execute()
    health: dict[str, DeliveryHealth] = {}
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
            "already_stored": int(text.get("already_stored", 0)),
            "overflowed": int(text.get("overflowed", 0)),
            "gaps": int(text.get("gaps", 0)),
        }
    return health
