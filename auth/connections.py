"""Live WebSocket counts per client, summed over hub instances.

Each hub instance keeps `{prefix}connections:{instance_id}` (client id -> open sockets) with a short
TTL it refreshes, so a crashed instance's counts vanish on their own.
"""

from __future__ import annotations

from collections import Counter

import redis.asyncio as aioredis

from hub.config import Settings


async def live_connections(redis: aioredis.Redis, settings: Settings) -> dict[str, int]:
    totals: Counter[str] = Counter()
    pattern = _glob_escape(settings.key("connections:")) + "*"
    async for key in redis.scan_iter(match=pattern, count=200):
        for client_id, count in (await redis.hgetall(key)).items():
            try:
                totals[_text(client_id)] += int(count)
            except ValueError:
                continue
    return dict(totals)


def _glob_escape(text: str) -> str:
    """Prefixes may contain glob characters (`[`, `*`); SCAN MATCH must see them literally."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
