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
from hub.ingest import LUA_OLDER, Broker
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
