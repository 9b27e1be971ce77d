"""Anonymised user ids (OEP-26): one random UUID per (LMS user, consumer type), never the user's own id.

The mapping lives in Redis so every hub instance and every restart gives the same answer; HSETNX
makes the first writer win when two instances meet a new user at once. Hits are served from a
bounded in-process cache, so the hot path does no I/O.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis

from hub.config import Settings
from rthub_lms.keys import anon_key

CACHE_SIZE = 100_000


class IdStore(Protocol):
    async def get_or_create(self, consumer_type: str, user_id: str) -> str: ...


class RedisIdStore:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def get_or_create(self, consumer_type: str, user_id: str) -> str:
        key = anon_key(self._settings, consumer_type)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, user_id, str(uuid.uuid4()))
            pipe.hget(key, user_id)
            _, value = await pipe.execute()
        return value.decode()


class Anonymiser:
    def __init__(self, store: IdStore, cache_size: int = CACHE_SIZE) -> None:
        self._store = store
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cache_size = cache_size

    def known(self, consumer_type: str, user_id: str) -> str | None:
        """The id from the in-process cache, or None when only the store can say (no I/O here)."""
        key = (consumer_type, user_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
        return cached

    async def actor_id(self, consumer_type: str, user_id: str) -> str:
        cached = self.known(consumer_type, user_id)
        if cached is not None:
            return cached
        key = (consumer_type, user_id)
        value = await self._store.get_or_create(consumer_type, user_id)
        self._cache[key] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value
