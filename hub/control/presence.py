"""Presence: which hub instances hold live WebSockets of a client, how many, and what they were sent.

The one record of live sockets, read by webhook delivery (is the client reachable by socket?) and by
the admin surfaces (how many sockets?). Per client, a sorted set `{prefix}{client}:presence` maps
each hub instance holding sockets of that client to an expiry time (Redis clock, ms); the instance
refreshes it every `ttl / 3`. A hash `{prefix}{client}:presence-state` keeps, per instance, the last
cursor its sockets of the client were sent (field `{instance}`), how many it holds (`{instance}:n`)
and, for websocket+webhook clients, its *cover*: the stream cursor at which its sockets took over
(`{instance}:from`). From that cursor on, every event reaches some socket of that instance live.

Ordered handoff: while an instance's cover is open, webhook delivery holds every queued event after
it (and drops those every live socket has certainly been sent). When an instance's last socket of
the client goes away (closed, or the instance stopped refreshing and expired), its cover closes: the
range `from,to` is pushed to `{prefix}{client}:handoff`, where `to` is the last cursor sent, pulled
back by `RTHUB_WEBHOOK_HANDOFF_MARGIN` (5 s) so frames still in flight to the socket when it dropped
are re-sent by webhook (same `webhook-id` per cursor: duplicates, never gaps). Webhook delivery skips
the events in closed ranges and delivers the rest of its outbox in cursor order. Covers are per
instance, so a crashed instance's cover ends where its sockets stopped, whoever connects meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.ingest import LUA_OLDER, BrokerUnavailable
from hub.redis import text
from rthub_lms import keys

log = logging.getLogger("rthub.presence")

DEFAULT_TTL_MS = 15_000


def margin_ms(settings: Settings) -> int:
    """How far a handoff is pulled back before the last cursor sent (frames possibly never read)."""
    return int(settings.webhook_handoff_margin * 1000)

# Shared Lua: the Redis clock, cursor ordering, and closing an instance's cover into a handoff range.
# KEYS[1] presence zset, KEYS[2] presence state hash, KEYS[3] handoff list.
LUA_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
""" + LUA_OLDER + """
local function earliest(a, b)
  if not a then return b end
  if not b then return a end
  if older(b, a) then return b end
  return a
end
-- One instance's sockets of the client are gone: its cover (cursor at connect, last cursor sent],
-- pulled back by `margin`, becomes a handoff range; the instance is forgotten.
local function leave(member, cursor, now, margin)
  local from = redis.call('HGET', KEYS[2], member .. ':from')
  if from then
    local to = earliest(cursor, tostring(now - margin) .. '-0')
    if older(from, to) then redis.call('RPUSH', KEYS[3], from .. ',' .. to) end
  end
  redis.call('HDEL', KEYS[2], member, member .. ':n', member .. ':from')
  redis.call('ZREM', KEYS[1], member)
end
-- Instances that stopped refreshing (crashed) leave with the last cursor they stored.
local function settle(now, margin)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    leave(member, redis.call('HGET', KEYS[2], member), now, margin)
  end
  return redis.call('ZCARD', KEYS[1])
end
"""

# KEYS: presence, state, handoff. ARGV: instance, ttl ms, sockets, stream top cursor, owed ('1'/'0'), margin.
# The top cursor is read just before (the stream lives in another slot): an event added in between makes
# the stored cursor older than it could be, so a handoff re-sends it (a duplicate, not a gap).
# Only websocket+webhook clients open a cover; for others nobody would read it. A cover this instance
# left behind (its disconnect never reached Redis) is closed first, so it cannot span the time between.
CONNECT_SCRIPT = LUA_PRELUDE + """
local now = now_ms()
local margin = tonumber(ARGV[6])
settle(now, margin)
if redis.call('HEXISTS', KEYS[2], ARGV[1] .. ':from') == 1 then
  leave(ARGV[1], redis.call('HGET', KEYS[2], ARGV[1]), now, margin)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1] .. ':n', ARGV[3])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSETNX', KEYS[2], ARGV[1] .. ':from', ARGV[4]) end
return 1
"""

# KEYS: presence, state, handoff. ARGV: instance, last cursor ('' = unknown), margin ms.
DISCONNECT_SCRIPT = LUA_PRELUDE + """
local now = now_ms()
local margin = tonumber(ARGV[3])
local cursor = ARGV[2]
if cursor == '' then cursor = redis.call('HGET', KEYS[2], ARGV[1]) or (tostring(now) .. '-0') end
leave(ARGV[1], cursor, now, margin)
return settle(now, margin)
"""

# KEYS: presence, state. ARGV: instance, ttl ms, cursor ('' = keep), sockets.
REFRESH_SCRIPT = LUA_PRELUDE + """
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
redis.call('HSET', KEYS[2], ARGV[1] .. ':n', ARGV[4])
return 1
"""

# What webhook delivery must know (KEYS: presence, state, handoff; ARGV: margin ms): the earliest cover
# of a live instance ('' = none), the newest cursor every live socket has certainly been sent
# ('' = none), and the closed ranges.
COVERS_SCRIPT = LUA_PRELUDE + """
local now = now_ms()
local margin = tonumber(ARGV[1])
settle(now, margin)
local from, safe = false, tostring(now - margin) .. '-0'
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  from = earliest(from, redis.call('HGET', KEYS[2], member .. ':from'))
  safe = earliest(safe, redis.call('HGET', KEYS[2], member))
end
local out = {from or '', from and safe or ''}
for _, range in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do table.insert(out, range) end
return out
"""


class Presence:
    """This hub instance's share of presence: call `connected` / `disconnected` per socket.

    `last_cursors` (optional) returns, per client, the oldest last-sent cursor among this instance's
    sockets; the refresher stores it so that a crashed instance's handoff starts close to where its
    sockets were, instead of where they connected.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        *,
        tip: Callable[[], Awaitable[str | None]],
        ttl_ms: int = DEFAULT_TTL_MS,
        last_cursors: Callable[[], dict[str, str | None]] | None = None,
        instance: str | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._tip = tip  # `Broker.tip`: the stream's newest cursor
        self.ttl_ms = ttl_ms
        self.instance = instance or uuid.uuid4().hex
        self._last_cursors = last_cursors
        self._counts: Counter[str] = Counter()
        self._connect = redis.register_script(CONNECT_SCRIPT)
        self._disconnect = redis.register_script(DISCONNECT_SCRIPT)
        self._refresh = redis.register_script(REFRESH_SCRIPT)
        self._task: asyncio.Task[None] | None = None

    def _keys(self, client_id: str) -> list[str]:
        s = self._settings
        return [keys.presence(s, client_id), keys.presence_state(s, client_id), keys.handoff(s, client_id)]

    async def connected(self, client_id: str, handoff_owed: bool = False) -> None:
        """A socket of `client_id` went live on this instance (call after it is added to the fan-out).

        `handoff_owed` (the client's delivery is websocket+webhook) says whether webhook delivery must
        hold its queue while the socket is live and resume it once the last socket leaves. Never raises:
        if Redis is away, the next refresh registers the socket (until then webhooks keep flowing, which
        means duplicates, not gaps).
        """
        self._counts[client_id] += 1
        if self._counts[client_id] == 1:
            try:
                # Read before the script: the socket is already in the fan-out, so it gets everything after.
                cursor = await self._tip() or "0-0"
                await self._connect(
                    keys=self._keys(client_id),
                    args=[self.instance, self.ttl_ms, 1, cursor, "1" if handoff_owed else "0",
                          margin_ms(self._settings)],
                )
            except (RedisError, BrokerUnavailable) as exc:
                log.warning("presence: connect of %s not recorded: %s", client_id, exc)

    async def disconnected(self, client_id: str, last_cursor: str | None) -> None:
        """A socket of `client_id` closed; `last_cursor` is the last event cursor it was sent (or None).

        Never raises: if Redis is away, this instance's entry is no longer refreshed and expires,
        which hands over from the last refreshed cursor instead.
        """
        if self._counts[client_id] <= 0:
            return
        self._counts[client_id] -= 1
        if self._counts[client_id] == 0:
            del self._counts[client_id]
            try:
                await self._disconnect(
                    keys=self._keys(client_id), args=[self.instance, last_cursor or "", margin_ms(self._settings)]
                )
            except RedisError as exc:
                log.warning("presence: disconnect of %s not recorded: %s", client_id, exc)

    async def refresh(self) -> None:
        """Extend this instance's presence for every client it holds sockets of."""
        cursors = self._last_cursors() if self._last_cursors else {}
        calls = [
            (self._keys(client_id)[:2], [self.instance, self.ttl_ms, cursors.get(client_id) or "", sockets])
            for client_id, sockets in list(self._counts.items())
        ]
        if isinstance(self._redis, aioredis.RedisCluster):  # its pipelines refuse scripts: send them side by side
            await asyncio.gather(*(self._refresh(keys=keys_, args=args) for keys_, args in calls))
            return
        pipe = self._redis.pipeline(transaction=False)
        for keys_, args in calls:
            await self._refresh(keys=keys_, args=args, client=pipe)
        await pipe.execute()

    def start(self) -> None:
        """Run the refresher (every ttl / 3) until `close`."""
        self._task = asyncio.create_task(self._refresher(), name="rthub-presence")

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                await self.refresh()
            except RedisError as exc:
                log.warning("presence refresh failed: %s", exc)

    async def close(self) -> None:
        """Stop refreshing and hand every client this instance holds over to webhooks."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client_id in list(self._counts):
            self._counts[client_id] = 1
            await self.disconnected(client_id, None)


async def live_connections(redis: aioredis.Redis, settings: Settings, client_ids: list[str]) -> dict[str, int]:
    """Open sockets per client (only clients with some), summed over instances whose presence is current."""
    if not client_ids:
        return {}
    seconds, micros = await redis.time()  # not in the pipeline: a cluster's pipelines take only keyed commands
    now_ms = seconds * 1000 + micros // 1000
    pipe = redis.pipeline(transaction=False)
    for client_id in client_ids:
        pipe.zrange(keys.presence(settings, client_id), 0, -1, withscores=True)
        pipe.hgetall(keys.presence_state(settings, client_id))
    replies = await pipe.execute()
    totals: dict[str, int] = {}
    for index, client_id in enumerate(client_ids):
        instances, state = replies[2 * index], replies[1 + 2 * index]
        counts = {text(name): value for name, value in state.items()}
        sockets = sum(
            int(counts.get(f"{text(instance)}:n", 0)) for instance, expiry in instances if expiry > now_ms
        )
        if sockets:
            totals[client_id] = sockets
    return totals
