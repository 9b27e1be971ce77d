"""The durable outbox: one capped Redis stream per client whose entry id is the event cursor.

Every routing hub instance reads every stream entry and appends it for each entitled client; Redis
refuses an XADD whose explicit id is not above the stream's last id, so the second instance's append
of the same cursor is a no-op ("already queued"), and the outbox holds each event once, in cursor
order. Trimming delivered entries (XDEL) keeps the stream's last id, so a late duplicate stays refused.
The outbox is capped (`RTHUB_WEBHOOK_OUTBOX_MAXLEN`): past the cap the oldest entries are dropped
and counted in the client's health (`overflowed`), so a dead endpoint cannot grow Redis without bound.
Out-of-band entries (dead-letter replays) go to a second stream per client, `requeue:{client}`,
delivered before the outbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, TypedDict

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from hub.config import Settings
from hub.redis import text
from rthub_lms import keys

# Append one client's events in cursor order. KEYS: outbox, health (both of one client).
# ARGV: cap, then cursor, body for each event. Returns how many were new (the rest were queued already).
APPEND_SCRIPT = """
local before = redis.call('XLEN', KEYS[1])
local queued = 0
local function count_dropped()
  local dropped = before + queued - redis.call('XLEN', KEYS[1])
  if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'overflowed', dropped) end
end
for i = 2, #ARGV, 2 do
  local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'b', ARGV[i + 1])
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'equal or smaller', 1, true) then
      count_dropped()
      return redis.error_reply(r.err)
    end
  else
    queued = queued + 1
  end
end
count_dropped()
return queued
"""


# The head of one client's queue, packed. KEYS: requeue, outbox. ARGV: limit, more, what was read before
# ('' nothing, 'r' requeue items, 'o' outbox items), its last id. Reads on after what was read (up to
# `more`); an outbox head gives way to requeued items (up to `limit`). Returns the stream ('r' / 'o'), the
# ids, the cursors (field `c`, else the id) and the body lengths in bytes, each joined by spaces, and
# the bodies (field `b`) concatenated.
HEAD_SCRIPT = """
local function pack(which, rows)
  local ids, cursors, lengths, bodies = {}, {}, {}, {}
  for i, row in ipairs(rows) do
    local f, cursor, body = row[2], row[1], ''
    for j = 1, #f, 2 do
      if f[j] == 'c' then cursor = f[j + 1] elseif f[j] == 'b' then body = f[j + 1] end
    end
    ids[i], cursors[i], lengths[i], bodies[i] = row[1], cursor, #body, body
  end
  return {which, table.concat(ids, ' '), table.concat(cursors, ' '), table.concat(lengths, ' '),
          table.concat(bodies)}
end
if ARGV[3] == 'r' then
  return pack('r', redis.call('XRANGE', KEYS[1], '(' .. ARGV[4], '+', 'COUNT', ARGV[2]))
end
local requeued = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
if #requeued > 0 then return pack('r', requeued) end
local from = '-'
if ARGV[3] == 'o' then from = '(' .. ARGV[4] end
return pack('o', redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', ARGV[2]))
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One queued delivery: where it sits (`source` stream, `id`), its cursor and encoded frame."""

    source: str
    id: str
    cursor: str
    body: str


class QueueDepth(TypedDict):
    """What waits to be delivered to one client."""

    queued: Annotated[int, {"description": "events in the outbox and the requeue stream (replayed dead letters)"}]
    oldest_queued_at: Annotated[
        float | None, {"description": "unix seconds the oldest waiting event was published; null: none waits"}
    ]


class Outbox:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._append = redis.register_script(APPEND_SCRIPT)
        self._head = redis.register_script(HEAD_SCRIPT)

    async def append(self, rows: list[tuple[str, str, str]]) -> dict[str, int]:
        """Append events given as (cursor, client id, body), each client's in the order given (cursor
        order); returns, per client, how many were new (the rest were queued already).

        One round trip: one EVALSHA per client (alone, or in a plain pipeline for several clients;
        redis-py would add a SCRIPT EXISTS round trip for a registered script); a client's events are
        appended by one script call, so they stay in order even when calls run side by side. On
        NOSCRIPT the script is loaded and everything re-sent, which is safe because appends are
        idempotent; so is sending everything again after any other error.
        """
        per_client: dict[str, list[str]] = {}
        for cursor, client_id, body in rows:
            per_client.setdefault(client_id, []).extend((cursor, body))
        if not per_client:
            return {}
        try:
            return await self._send(per_client)
        except NoScriptError:
            await self._redis.script_load(APPEND_SCRIPT)
            return await self._send(per_client)

    async def _send(self, per_client: dict[str, list[str]]) -> dict[str, int]:
        cap = self._settings.webhook_outbox_maxlen
        calls = [
            (keys.outbox(self._settings, client_id), keys.health(self._settings, client_id), cap, *events)
            for client_id, events in per_client.items()
        ]
        if len(calls) == 1:
            results = [await self._redis.evalsha(self._append.sha, 2, *calls[0])]
        elif isinstance(self._redis, aioredis.RedisCluster):  # its pipelines refuse scripts: send them side by side
            results = await asyncio.gather(*(self._redis.evalsha(self._append.sha, 2, *call) for call in calls))
        else:
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(self._append.sha, 2, *call)
            results = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return {client_id: int(result) for client_id, result in zip(per_client, results, strict=True)}

    async def head(self, client_id: str, limit: int, read: list[Item] | None = None) -> list[Item]:
        """The next items to deliver: the requeue stream first, else the outbox, oldest first.

        `read`: the head as read before (all from one stream), still undelivered: only what follows it
        is read (a batch filling up reads each event once, not the whole head again), and returned
        after it, unless the requeue stream has gained items ahead of an outbox head. One script call
        answering five strings (`HEAD_SCRIPT`): parsing a reply element costs the hub far more than
        Redis spends joining them."""
        requeue_key = keys.requeue(self._settings, client_id)
        outbox_key = keys.outbox(self._settings, client_id)
        read = read or []
        more = limit - len(read)
        if more <= 0:
            return read
        after = ("r" if read[0].source == requeue_key else "o", read[-1].id) if read else ("", "")
        which, ids, cursors, lengths, bodies = await self._head(
            keys=[requeue_key, outbox_key], args=[limit, more, *after]
        )
        source = requeue_key if text(which) == "r" else outbox_key
        found = _items(source, text(ids), text(cursors), text(lengths), bodies)
        return read + found if read and read[0].source == source else found

    async def span(self, source: str, first: str, last: str, limit: int) -> list[Item]:
        """The items still queued between two ids of one stream (a batch being retried)."""
        rows = await self._redis.xrange(source, min=first, max=last, count=limit)
        return [_item(source, row_id, fields) for row_id, fields in rows]

    async def backlog(self, client_ids: list[str]) -> int:
        """Events queued and not yet delivered to these clients (outboxes and requeue streams: delivered
        entries are deleted), read in one round trip."""
        if not client_ids:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for client_id in client_ids:
            pipe.xlen(keys.outbox(self._settings, client_id))
            pipe.xlen(keys.requeue(self._settings, client_id))
        return sum(await pipe.execute())


    async def depth(self, client_id: str) -> QueueDepth:
        """How many events wait for one client and when the oldest of them was published (a cursor is
        its publication time in milliseconds), in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for key in (keys.outbox(self._settings, client_id), keys.requeue(self._settings, client_id)):
            pipe.xlen(key)
            pipe.xrange(key, count=1)
        queued, first_queued, requeued, first_requeued = await pipe.execute()
        cursors = [_item("", row_id, fields).cursor for row_id, fields in first_queued + first_requeued]
        oldest = min((int(cursor.partition("-")[0]) for cursor in cursors if cursor.partition("-")[0].isdigit()),
                     default=None)
        return {"queued": queued + requeued, "oldest_queued_at": None if oldest is None else oldest / 1000}


def field(fields: dict, name: str) -> str | None:
    """A stream entry field whether the client decodes responses or not."""
    value = fields.get(name.encode(), fields.get(name))
    return None if value is None else text(value)


def _item(source: str, row_id: bytes | str, fields: dict) -> Item:
    entry_id = text(row_id)
    return Item(source, entry_id, field(fields, "c") or entry_id, field(fields, "b") or "")


def _items(source: str, ids: str, cursors: str, lengths: str, bodies: bytes | str) -> list[Item]:
    """Unpack `HEAD_SCRIPT`'s answer."""
    if not ids:
        return []
    raw = bodies if isinstance(bodies, bytes) else bodies.encode()
    items, at = [], 0
    for entry_id, cursor, length in zip(ids.split(" "), cursors.split(" "), lengths.split(" "), strict=True):
        end = at + int(length)
        items.append(Item(source, entry_id, cursor, raw[at:end].decode()))
        at = end
    return items
