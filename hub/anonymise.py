"""Actor ids: anonymised user ids (OEP-26), one random UUID per (LMS user, consumer type), never the
user's own id; or, for `lms-external-id` clients, the LMS's own ExternalId that the plug-in mirrors.

The mapping lives in Redis so every hub instance and every restart gives the same answer; HSETNX
makes the first writer win when two instances meet a new user at once. Hits are served from a
bounded in-process cache, so the hot path does no I/O. `RedisIdStore` is the one reader and writer
of the mapping, including for a registry backup (`scan`, `restore`): a learner given a new id after a
Redis loss would look like a stranger to every consumer.

An actor space (`auth.clients.actor_space`) says which: a consumer type, or `lms-external-id:<type>`.
External ids are only read here: the LMS plug-in is their one writer (`rthub_lms.external_ids`), since
only the LMS can create them. A learner the mirror does not hold raises `NoExternalId`: never another
id in its place, which would split the learner's history at the consumer.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Literal, Protocol

import redis.asyncio as aioredis

from auth.clients import external_id_type
from hub.config import Settings
from hub.redis import text
from rthub_lms.keys import anon_key, external_ids_key

CACHE_SIZE = 100_000
SCAN_BATCH = 1000

RestoreMode = Literal["keep", "replace", "dry-run"]

# Write ids from a backup: a user without an id gets the backup's; one whose id differs keeps it unless
# ARGV[1] is `replace`; `dry-run` writes nothing. Returns {new, same, differing}.
_RESTORE = """
local new, same, differ = 0, 0, 0
for i = 2, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old then
    new = new + 1
    if ARGV[1] ~= 'dry-run' then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  elseif old == ARGV[i + 1] then
    same = same + 1
  else
    differ = differ + 1
    if ARGV[1] == 'replace' then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  end
end
return {new, same, differ}
"""


class NoExternalId(LookupError):
    """The LMS mirrored no external id of `id_type` for this learner (yet): the event cannot name them."""

    def __init__(self, id_type: str, user_id: str) -> None:
        super().__init__(f"no {id_type} external id mirrored for LMS user {user_id} "
                         "(run `python -m rthub_lms.external_ids` in the LMS)")
        self.id_type = id_type
        self.user_id = user_id


class IdStore(Protocol):
    async def get_or_create(self, consumer_type: str, user_id: str) -> str: ...

    async def get_or_create_many(self, consumer_type: str, user_ids: list[str]) -> dict[str, str]: ...

    async def external_id(self, id_type: str, user_id: str) -> str | None: ...

    async def external_ids(self, id_type: str, user_ids: list[str]) -> dict[str, str]: ...


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

    async def get_or_create_many(self, consumer_type: str, user_ids: list[str]) -> dict[str, str]:
        """`get_or_create` for many learners in one round trip (a backfill meets thousands at once)."""
        if not user_ids:
            return {}
        key = anon_key(self._settings, consumer_type)
        async with self._client.pipeline(transaction=True) as pipe:
            for user_id in user_ids:
                pipe.hsetnx(key, user_id, str(uuid.uuid4()))
            pipe.hmget(key, user_ids)
            *_, values = await pipe.execute()
        return {user_id: text(value) for user_id, value in zip(user_ids, values, strict=True)}

    async def external_id(self, id_type: str, user_id: str) -> str | None:
        """The LMS's external id of `id_type` for a learner, as the plug-in mirrored it; None when absent."""
        value = await self._client.hget(external_ids_key(self._settings, id_type), user_id)
        return text(value) if value is not None else None

    async def external_ids(self, id_type: str, user_ids: list[str]) -> dict[str, str]:
        """`external_id` for many learners in one round trip; those the mirror lacks are left out."""
        if not user_ids:
            return {}
        values = await self._client.hmget(external_ids_key(self._settings, id_type), user_ids)
        return {user_id: text(value) for user_id, value in zip(user_ids, values, strict=True) if value is not None}

    async def count(self, consumer_type: str) -> int:
        return int(await self._client.hlen(anon_key(self._settings, consumer_type)))

    async def scan(self, consumer_type: str, batch: int = SCAN_BATCH) -> AsyncIterator[dict[str, str]]:
        """Every (user id -> anonymised id) of a consumer type, in batches, with HSCAN: millions of
        learners never sit in memory or block Redis at once. Ids written meanwhile may or may not appear."""
        key, cursor = anon_key(self._settings, consumer_type), 0
        while True:
            cursor, found = await self._client.hscan(key, cursor, count=batch)
            if found:
                yield {text(user): text(value) for user, value in found.items()}
            if not cursor:
                return

    async def restore(self, consumer_type: str, ids: dict[str, str], mode: RestoreMode) -> tuple[int, int, int]:
        """Put back ids from a backup; returns how many were (new, the same, differing). A differing id
        was handed out since the backup; it is kept unless `mode` is `replace`."""
        if not ids:
            return 0, 0, 0
        args = [mode, *(item for pair in ids.items() for item in pair)]
        new, same, differ = await self._client.eval(_RESTORE, 1, anon_key(self._settings, consumer_type), *args)
        return int(new), int(same), int(differ)


class Anonymiser:
    def __init__(self, store: IdStore, cache_size: int = CACHE_SIZE) -> None:
        self._store = store
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cache_size = cache_size

    def known(self, space: str, user_id: str) -> str | None:
        """The id from the in-process cache, or None when only the store can say (no I/O here)."""
        key = (space, user_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
        return cached

    async def actor_id(self, space: str, user_id: str) -> str:
        """The learner's id in an actor space (a consumer type, or `lms-external-id:<type>`); raises
        `NoExternalId` when an external id is not mirrored (not cached: the mirror may be filled later)."""
        cached = self.known(space, user_id)
        if cached is not None:
            return cached
        key = (space, user_id)
        id_type = external_id_type(space)
        if id_type is None:
            value = await self._store.get_or_create(space, user_id)
        else:
            found = await self._store.external_id(id_type, user_id)
            if found is None:
                raise NoExternalId(id_type, user_id)
            value = found
        self._keep(key, value)
        return value

    async def actor_ids(self, space: str, user_ids: set[str]) -> dict[str, str]:
        """The ids of many learners in an actor space: cached ones at once, the others from the store in
        one call. Learners without a mirrored external id are left out (the caller says what that means)."""
        found: dict[str, str] = {}
        missing = []
        for user_id in user_ids:
            cached = self.known(space, user_id)
            if cached is None:
                missing.append(user_id)
            else:
                found[user_id] = cached
        id_type = external_id_type(space)
        if id_type is None:
            fetched = await self._store.get_or_create_many(space, missing)
        else:
            fetched = await self._store.external_ids(id_type, missing)
        for user_id, value in fetched.items():
            self._keep((space, user_id), value)
            found[user_id] = value
        return found

    def _keep(self, key: tuple[str, str], value: str) -> None:
        self._cache[key] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
