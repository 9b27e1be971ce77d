"""Where webhook routing stands in the event stream: a saved cursor, advanced only after the appends.

`{prefix}wh:routed` holds the newest cursor whose entitled appends are all in the outboxes. Every
routing instance with webhook clients reads it at start and moves it forward (never back) after each
page it appended, so a hub that starts continues where routing stopped — after a SIGTERM, a SIGKILL
or a deploy — as long as the stream still retains that cursor. Several instances may route at once:
outbox appends are idempotent, and the cursor only ever takes the larger value.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from hub.config import Settings
from hub.ingest import LUA_OLDER, Broker, cursor_key
from hub.redis import text
from rthub_lms import keys

OLDER = LUA_OLDER + """
local saved = redis.call('GET', KEYS[1])
"""

# KEYS: routed. ARGV: cursor. Sets it when newer than the saved one; returns the saved value after.
ADVANCE_SCRIPT = OLDER + """
if not saved or older(saved, ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return saved
"""

# KEYS: routed. ARGV: gap start, cursor to save. Saves it only if nobody has moved past the gap start.
CLAIM_SCRIPT = OLDER + """
if saved and older(ARGV[1], saved) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class Position:
    def __init__(self, redis: aioredis.Redis, broker: Broker, settings: Settings) -> None:
        self._redis = redis
        self._broker = broker
        self.key = keys.routed(settings)
        self._advance = redis.register_script(ADVANCE_SCRIPT)
        self._claim = redis.register_script(CLAIM_SCRIPT)

    async def load(self) -> str:
        """The saved cursor; on the very first start, the stream's newest (history is not routed)."""
        saved = await self._redis.get(self.key)
        if saved is not None:
            return text(saved)
        return await self.advance_to_tip()

    async def advance_to_tip(self) -> str:
        """Save the stream's newest cursor (nothing before it will be routed); returns what is saved now."""
        return await self.advance(await self._broker.tip() or "0-0")

    async def advance(self, cursor: str) -> str:
        """Save `cursor` unless a newer one is saved; returns what is saved now."""
        return text(await self._advance(keys=[self.key], args=[cursor]))

    async def claim_gap(self, after: str, upto: str) -> bool:
        """True for exactly one instance: the one that moves the saved cursor from `after` (or older)
        to `upto`, so a gap is recorded once however many instances notice it."""
        return bool(await self._claim(keys=[self.key], args=[after, upto]))


async def routed_upto(redis: aioredis.Redis, settings: Settings, client_id: str) -> str | None:
    """The cursor up to which routing has queued the client's events: everyone's position, or the
    client's own place when it is being caught up (or held) behind it; None before routing started."""
    shared = await redis.get(keys.routed(settings))
    own = await redis.hget(keys.client_routing(settings, client_id), "from")
    found = [text(value) for value in (shared, own) if value is not None]
    return min(found, key=cursor_key) if found else None


# KEYS: one client's routing hash. ARGV: cursor. Saves it as `from` unless an older one is saved.
KEEP_OLDER_SCRIPT = LUA_OLDER + """
local saved = redis.call('HGET', KEYS[1], 'from')
if not saved or older(ARGV[1], saved) then redis.call('HSET', KEYS[1], 'from', ARGV[1]) end
return 1
"""


class ClientPosition:
    """Where routing stands for one client apart from everyone: `{prefix}{client}:wh:from`.

    `joined` is the record's `routed_from` that routing has accounted for; `from` the cursor after
    which the client still has to be routed (a catch-up under way, or a client held while its grant
    does not compile). Saved before the shared position moves past anything the client did not get,
    so a router that stops (even SIGKILLed) leaves the next one what it needs to catch the client up.
    """

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._keep_older = redis.register_script(KEEP_OLDER_SCRIPT)

    async def read(self, client_id: str) -> tuple[str, str | None]:
        """(joined, from): the `routed_from` accounted for ("" if none) and where the client's catch-up
        starts (None: it needs none)."""
        found = await self._redis.hmget(keys.client_routing(self._settings, client_id), ["joined", "from"])
        joined, start = (None if value is None else text(value) for value in found)
        return joined or "", start

    async def keep_older(self, client_id: str, cursor: str) -> None:
        """The client still has to be routed after `cursor` (kept when an older point is saved)."""
        await self._keep_older(keys=[keys.client_routing(self._settings, client_id)], args=[cursor])

    async def start(self, client_id: str, start: str, routed_from: str) -> None:
        """A catch-up (or a hold) from `start` that accounts for the record's `routed_from`."""
        await self._redis.hset(
            keys.client_routing(self._settings, client_id), mapping={"from": start, "joined": routed_from}
        )

    async def progress(self, client_id: str, cursor: str) -> None:
        """The catch-up has routed the client up to `cursor`."""
        await self._redis.hset(keys.client_routing(self._settings, client_id), "from", cursor)

    async def caught_up(self, client_id: str, routed_from: str) -> None:
        """The client is routed with everyone from now on."""
        key = keys.client_routing(self._settings, client_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "joined", routed_from)
            pipe.hdel(key, "from")
            await pipe.execute()
