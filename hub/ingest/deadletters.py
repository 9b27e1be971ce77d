"""Dead letters of the ingest path: what the hub met on the stream or live channel and could not carry.

Each goes to the capped stream `{prefix}{events}:deadletters` with the reason, so an operator can see
what a buggy or hostile producer wrote, while the fan-out carries on with the next event.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.ingest import BadEntry
from rthub_lms.keys import ingest_deadletters_key

log = logging.getLogger("rthub.deadletter")

MAXLEN = 100_000
# What is kept of a bad payload: enough to see what it was, not enough to fill Redis.
RAW_KEPT = 4096


class DeadLetters(Protocol):
    counts: Counter[str]

    async def put(self, bad: BadEntry) -> None:
        """Record one bad entry; never raises."""
        ...


class LogDeadLetters:
    """A fan-out built without a dead-letter stream (benchmarks): bad entries are logged and counted."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def put(self, bad: BadEntry) -> None:
        self.counts[bad.reason] += 1
        log.warning("dead letter at cursor %s: %s (%s)", bad.cursor, bad.reason, bad.detail)


class RedisDeadLetters:
    """`counts[reason]` counts every bad entry met; `counts["unrecorded"]` those Redis did not take."""

    def __init__(self, client: aioredis.Redis, settings: Settings, maxlen: int = MAXLEN) -> None:
        self._client = client
        self._key = ingest_deadletters_key(settings)
        self._maxlen = maxlen
        self.counts: Counter[str] = Counter()

    async def put(self, bad: BadEntry) -> None:
        self.counts[bad.reason] += 1
        fields = {"cursor": bad.cursor or "", "reason": bad.reason, "detail": bad.detail, "raw": bad.raw[:RAW_KEPT]}
        try:
            await self._client.xadd(self._key, fields, maxlen=self._maxlen, approximate=True)
        except (RedisError, OSError) as exc:
            self.counts["unrecorded"] += 1
            log.warning("could not record dead letter at cursor %s (%s): %s", bad.cursor, bad.reason, exc)
