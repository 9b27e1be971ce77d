"""Leases: exactly one hub instance at a time delivers for a client, or routes the stream.

`SET lease token NX PX ttl`, renewed while working. Every write that moves a client's delivery
forward (acknowledge, dead-letter, retry state) is fenced by the token inside one Lua script, so an
instance that lost its lease (paused past the ttl) cannot undo the work of the one that took over.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, state. ARGV: token, field, value, ...
SAVE_STATE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# Remove delivered (or given-up) items from their stream and clear the retry state; with a reason,
# copy each to the client's (capped) dead-letter stream first; for a delivery, record it in the client's
# health in the same call (one round trip per delivery). KEYS: lease, source stream, state, dead letters,
# health (all in the client's slot).
# ARGV: token, reason ('' = no dead letter), client id, attempts, now ms, url, dead-letter cap,
# delivered ('1' / '0'), id...
FINISH_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local done = 0
for i = 9, #ARGV do
  local rows = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i], 'COUNT', 1)
  if #rows > 0 then
    if ARGV[2] ~= '' then
      local f = rows[1][2]
      local cursor, body = ARGV[i], ''
      for j = 1, #f, 2 do
        if f[j] == 'c' then cursor = f[j + 1] elseif f[j] == 'b' then body = f[j + 1] end
      end
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'client_id', ARGV[3], 'cursor', cursor, 'body', body,
        'reason', ARGV[2], 'attempts', ARGV[4], 'failed_at', ARGV[5], 'url', ARGV[6])
    end
    redis.call('XDEL', KEYS[2], ARGV[i])
    done = done + 1
  end
end
redis.call('DEL', KEYS[3])
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[5], 'last_delivery_at', string.format('%.3f', tonumber(ARGV[5]) / 1000))
  redis.call('HINCRBY', KEYS[5], 'delivered', #ARGV - 8)
  redis.call('HDEL', KEYS[5], 'failing_since')
end
return done
"""


class LeaseLost(Exception):
    """This instance no longer holds the client's delivery lease."""


class Lease:
    def __init__(self, redis: aioredis.Redis, key: str, ttl_ms: int) -> None:
        self._redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(RENEW_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._save = redis.register_script(SAVE_STATE_SCRIPT)
        self._finish = redis.register_script(FINISH_SCRIPT)

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])

    async def save_state(self, state_key: str, values: dict[str, str | int | float]) -> None:
        args: list[str | int | float] = [self.token]
        for name, value in values.items():
            args += [name, value]
        if not await self._save(keys=[self.key, state_key], args=args):
            raise LeaseLost(self.key)

    async def finish(
        self,
        source: str,
        state_key: str,
        keys: tuple[str, str],
        ids: list[str],
        *,
        delivered: bool = False,
        reason: str = "",
        client_id: str = "",
        attempts: int = 0,
        url: str = "",
        cap: int = 0,
    ) -> int:
        """Acknowledge `ids` (reason empty; `delivered` also records the delivery in the health hash)
        or move them to the dead letters; returns how many moved. `keys`: (deadletters, health)."""
        deadletters_key, health_key = keys
        done = await self._finish(
            keys=[self.key, source, state_key, deadletters_key, health_key],
            args=[self.token, reason, client_id, attempts, int(time.time() * 1000), url, cap or 2**62,
                  "1" if delivered else "0", *ids],
        )
        if done == -1:
            raise LeaseLost(self.key)
        return int(done)
