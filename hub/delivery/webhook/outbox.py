"""The durable outbox: one Redis stream per client whose entry id is the event cursor.

Every hub instance sees every live event and appends it for each entitled client; Redis refuses an
XADD whose explicit id is not above the stream's last id, so the second instance's append of the
same cursor is a no-op ("already queued"), and the outbox holds each event once, in cursor order.
Trimming delivered entries (XDEL) keeps the stream's last id, so a late duplicate stays refused.
Out-of-band entries (dead-letter replays, handoff backfill) go to a second stream per client,
`requeue:{client}`, delivered before the outbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import IntEnum

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from hub.config import Settings
from hub.control.presence import HANDOFF_MARGIN_MS, LUA_PRELUDE
from rthub_lms import keys

# KEYS: presence zset, presence cursors, handoff list, outbox. ARGV: cursor, body, check presence, margin.
APPEND_SCRIPT = LUA_PRELUDE + """
if ARGV[3] == '1' then
  if settle(now_ms(), tonumber(ARGV[4]), nil, true) > 0 then return 0 end
end
local r = redis.pcall('XADD', KEYS[4], ARGV[1], 'b', ARGV[2])
if type(r) == 'table' and r.err then
  if string.find(r.err, 'equal or smaller', 1, true) then return 2 end
  return redis.error_reply(r.err)
end
return 1
"""


class Appended(IntEnum):
    """What one append did: skipped (a live socket has the client), queued, or already queued."""

    SOCKET_LIVE = 0
    QUEUED = 1
    ALREADY_QUEUED = 2


@dataclass(frozen=True, slots=True)
class Item:
    """One queued delivery: where it sits (`source` stream, `id`), its cursor and encoded frame."""

    source: str
    id: str
    cursor: str
    body: str


class Outbox:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._append = redis.register_script(APPEND_SCRIPT)

    def append_keys(self, client_id: str) -> list[str]:
        s = self._settings
        return [
            keys.presence(s, client_id), keys.presence_state(s, client_id), keys.handoff(s, client_id),
            keys.outbox(s, client_id),
        ]

    async def append(self, cursor: str, appends: list[tuple[str, str, bool]]) -> list[Appended]:
        """Append one event for several clients, given as (client id, body, check presence).

        One round trip: EVALSHA (alone, or in a plain pipeline for several clients; redis-py would
        add a SCRIPT EXISTS round trip for a registered script). On NOSCRIPT the script is loaded
        and everything re-sent, which is safe because appends are idempotent.
        """
        try:
            return await self._send(cursor, appends)
        except NoScriptError:
            await self._redis.script_load(APPEND_SCRIPT)
            return await self._send(cursor, appends)

    async def _send(self, cursor: str, appends: list[tuple[str, str, bool]]) -> list[Appended]:
        calls = [
            (*self.append_keys(client_id), cursor, body, "1" if check else "0", HANDOFF_MARGIN_MS)
            for client_id, body, check in appends
        ]
        if len(calls) == 1:
            return [Appended(int(await self._redis.evalsha(self._append.sha, 4, *calls[0])))]
        if isinstance(self._redis, aioredis.RedisCluster):  # its pipelines refuse scripts: send them side by side
            sent = [self._redis.evalsha(self._append.sha, 4, *call) for call in calls]
            return [Appended(int(result)) for result in await asyncio.gather(*sent)]
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(self._append.sha, 4, *call)
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [Appended(int(result)) for result in results]

    async def head(self, client_id: str, limit: int) -> list[Item]:
        """The next items to deliver: the requeue stream first, else the outbox, oldest first."""
        requeue_key = keys.requeue(self._settings, client_id)
        outbox_key = keys.outbox(self._settings, client_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.xrange(requeue_key, count=limit)
        pipe.xrange(outbox_key, count=limit)
        requeued, queued = await pipe.execute()
        if requeued:
            return [_item(requeue_key, row_id, fields) for row_id, fields in requeued]
        return [_item(outbox_key, row_id, fields) for row_id, fields in queued]

    async def span(self, source: str, first: str, last: str, limit: int) -> list[Item]:
        """The items still queued between two ids of one stream (a batch being retried)."""
        rows = await self._redis.xrange(source, min=first, max=last, count=limit)
        return [_item(source, row_id, fields) for row_id, fields in rows]

    async def pending_ids(self, client_id: str, after: str, upto: str) -> set[str]:
        """Cursors queued in the outbox within (after, upto]: backfill skips them."""
        rows = await self._redis.xrange(keys.outbox(self._settings, client_id), min=f"({after}", max=upto)
        return {_text(row_id) for row_id, _ in rows}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def field(fields: dict, name: str) -> str | None:
    """A stream entry field whether the client decodes responses or not."""
    value = fields.get(name.encode(), fields.get(name))
    return None if value is None else _text(value)


def _item(source: str, row_id: bytes | str, fields: dict) -> Item:
    entry_id = _text(row_id)
    return Item(source, entry_id, field(fields, "c") or entry_id, field(fields, "b") or "")
