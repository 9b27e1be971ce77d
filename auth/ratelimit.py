"""Brute-force protection for client authentication: failures counted per client id and per source address.

Counters live in Redis (`{prefix}authfail:client:{id}`, `{prefix}authfail:ip:{address}`), each expiring
`window` seconds after its first failure, so every hub instance enforces the same budget. Once a
budget is spent every attempt on that client id or from that address gets 429 with `Retry-After`,
even one with the right secret: otherwise the lockout would still tell a guesser when it is right.
The price is that a stranger can lock a client id out for one window; the per-client budget is set
well above what a misconfigured consumer burns through by mistake.
If Redis cannot answer the limiter fails open: the token endpoint then fails on the registry anyway.

Every request reads the counters, but concurrent requests share the read: one MGET answers every
request that arrived before it was sent (`SharedReads`), so a burst pays one round trip per batch
rather than one each, and no answer is older than its request.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.settings import AuthSettings
from rthub_lms.keys import auth_failures

log = logging.getLogger("rthub.ratelimit")


class FailureLimiter:
    def __init__(self, redis: aioredis.Redis, settings: AuthSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._limits = {"client": settings.token_failure_limit, "ip": settings.token_failure_ip_limit}
        self._window = settings.token_failure_window
        self._reads = SharedReads(redis)
        self.refused = 0

    def _keys(self, client_id: str | None, address: str | None) -> list[tuple[str, int]]:
        found = []
        if client_id:
            found.append((auth_failures(self._settings, "client", client_id[:200]), self._limits["client"]))
        if address:
            found.append((auth_failures(self._settings, "ip", address), self._limits["ip"]))
        return found

    async def retry_after(self, client_id: str | None, address: str | None) -> int:
        """Seconds until this client id and address may try again; 0 when they may now.

        One MGET, shared with the requests waiting at the same moment; the TTLs are read only when a
        budget is spent (rare)."""
        keys = self._keys(client_id, address)
        if not keys:
            return 0
        try:
            counts = await self._reads.get([key for key, _ in keys])
            spent = [key for (key, limit), count in zip(keys, counts, strict=True) if count and int(count) >= limit]
            ttls = [await self._redis.ttl(key) for key in spent]
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable, not limiting: %s", exc)
            return 0
        if not spent:
            return 0
        self.refused += 1
        return max(ttl if ttl > 0 else self._window for ttl in ttls)

    async def failed(self, client_id: str | None, address: str | None) -> None:
        """Count one failed authentication against both budgets."""
        try:
            keys = self._keys(client_id, address)
            if not keys:
                return
            async with self._redis.pipeline(transaction=True) as pipe:  # one slot: `{authfail}`
                for key, _ in keys:
                    pipe.set(key, 0, ex=self._window, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable, failure not counted: %s", exc)


class SharedReads:
    """GETs of many callers in one MGET: callers that arrive while a read is in flight wait for the
    next, which starts as soon as it returns, so every value was read after its caller asked.
    The keys must share one cluster slot (the counters' `{authfail}`)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._waiting: list[tuple[list[str], asyncio.Future[list[bytes | None]]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, keys: list[str]) -> list[bytes | None]:
        future: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, future))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="rthub-ratelimit-read")
        return await future

    async def _read(self) -> None:
        batch: list[tuple[list[str], asyncio.Future[list[bytes | None]]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                wanted = list(dict.fromkeys(key for keys, _ in batch for key in keys))
                try:
                    found = dict(zip(wanted, await self._redis.mget(wanted), strict=True))
                except Exception as exc:  # each caller judges the failure as a read of its own would
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for keys, future in batch:
                    if not future.done():
                        future.set_result([found[key] for key in keys])
        finally:
            self._reader = None
            for _, future in batch + self._waiting:  # left unanswered only when cancelled (shutdown)
                if not future.done():
                    future.cancel()
            self._waiting = []
