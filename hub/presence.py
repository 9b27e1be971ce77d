"""Live-socket counts per client, published by each hub instance for the admin API and page.

Each instance owns `{prefix}connections:{instance}` (client id -> open sockets), rewritten every few
seconds with a TTL of three periods, so the counts of a crashed instance disappear on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.fanout import Fanout
from hub.layout import connections_key

log = logging.getLogger("rthub.presence")

PERIOD = 5.0


async def publish_counts(client: aioredis.Redis, settings: Settings, fanout: Fanout, period: float = PERIOD) -> None:
    """Rewrite this instance's counts every `period` seconds until cancelled."""
    key = connections_key(settings, uuid.uuid4().hex)
    try:
        while True:
            counts = fanout.per_client()
            try:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.delete(key)
                    if counts:
                        pipe.hset(key, mapping=dict(counts))
                        pipe.expire(key, int(period * 3))
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("could not publish connection counts: %s", exc)
            await asyncio.sleep(period)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.delete(key)
