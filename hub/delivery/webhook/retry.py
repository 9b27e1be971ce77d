"""The batch waiting for its next attempt, as admins see it, and "retry now".

The delivering worker keeps the batch in flight in `{prefix}{<client>}:wh:state` (fenced by its lease:
`lease.SAVE_STATE_SCRIPT`): attempts made, the next attempt time and the last error. "Retry now" sets
that time to 0 in Redis and sends the registry's change notice for the client: every hub instance's
router passes it to its worker (`DeliveryWorker.recheck`), and the one holding the lease, wherever it
runs, reads the state again and attempts at once; a worker that takes the lease later reads the same
state. A worker that is posting at that moment has its own next time saved after the POST: that
attempt was the retry.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.outbox import field
from rthub_lms import keys

# KEYS: the client's retry state. Only a batch waiting for a later attempt is moved forward.
RETRY_NOW_SCRIPT = """
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0')
if next_at == nil or next_at <= 0 then return 0 end
redis.call('HSET', KEYS[1], 'next_at', '0')
return 1
"""


class RetryState(TypedDict):
    """The batch a client's worker is retrying: it failed `attempts` times and waits for `next_attempt_at`."""

    attempts: int
    next_attempt_at: Annotated[float | None, {"description": "unix seconds; null: due now, or held while paused"}]
    last_error: str


async def retry_state(redis: aioredis.Redis, settings: Settings, client_id: str) -> RetryState | None:
    """The client's batch in flight after a failed attempt; None when nothing is being retried."""
    state = await redis.hgetall(keys.state(settings, client_id))
    if not state:
        return None
    next_at = float(field(state, "next_at") or 0)
    return {
        "attempts": int(field(state, "attempts") or 0),
        "next_attempt_at": round(next_at, 3) if next_at > 0 else None,
        "last_error": field(state, "error") or "",
    }


async def retry_now(redis: aioredis.Redis, settings: Settings, client_id: str) -> bool:
    """Move the client's next attempt to now and wake its worker on whichever instance holds its lease;
    False when no batch was waiting for a later attempt."""
    moved = bool(await redis.eval(RETRY_NOW_SCRIPT, 1, keys.state(settings, client_id)))
    if moved:
        await ClientRegistry(redis, settings).announce(client_id)
    return moved
