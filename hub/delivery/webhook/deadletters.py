"""The dead-letter store: events whose delivery failed for good, listed and replayed on demand.

`{prefix}deadletters` is one stream for all clients; each entry keeps the client id, cursor, the
exact body that failed, the reason, the attempts made, when it failed and the URL. Replay moves an
entry, atomically, to its client's requeue stream, which the delivery worker drains before the
outbox; the `webhook-id` is derived from the cursor, so a receiver that saw it before can tell.
Both the CLI (`rthub deadletters`) and the admin API call these functions. The store is capped
(`RTHUB_WEBHOOK_DEADLETTERS_MAXLEN`, oldest dropped first), and entry ids are failure times, so
"every failed message of a client between two times" is one range read. `gap` records (events that
left the stream before they were routed) carry no event and are listed, never replayed.
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from hub.config import Settings
from hub.delivery.webhook.outbox import field
from rthub_lms import keys

PAGE = 500

# KEYS: deadletters, the client's requeue stream. ARGV: dead-letter id.
REPLAY_SCRIPT = """
local rows = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
if #rows == 0 then return 0 end
local f = rows[1][2]
local cursor, body = '', ''
for j = 1, #f, 2 do
  if f[j] == 'cursor' then cursor = f[j + 1] elseif f[j] == 'body' then body = f[j + 1] end
end
redis.call('XADD', KEYS[2], '*', 'c', cursor, 'b', body)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""


def _record(row_id: bytes | str, fields: dict) -> dict:
    body = field(fields, "body") or ""
    try:
        event_type = orjson.loads(body).get("event_type")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = None
    return {
        "id": row_id.decode() if isinstance(row_id, bytes) else row_id,
        "client_id": field(fields, "client_id"),
        "cursor": field(fields, "cursor"),
        "event_type": event_type,
        "reason": field(fields, "reason"),
        "attempts": int(field(fields, "attempts") or 0),
        "failed_at": int(field(fields, "failed_at") or 0) / 1000,
        "url": field(fields, "url"),
    }


def _bound(seconds: float | None, default: str) -> str:
    return default if seconds is None else str(max(int(seconds * 1000), 0))


async def _scan(
    redis: aioredis.Redis,
    settings: Settings,
    client_id: str | None,
    limit: int | None,
    since: float | None = None,
    until: float | None = None,
) -> list[dict]:
    """Dead letters oldest first, optionally of one client and failed within [since, until] (unix s),
    at most `limit` (None: all)."""
    found: list[dict] = []
    start, end = _bound(since, "-"), _bound(until, "+")
    while limit is None or len(found) < limit:
        rows = await redis.xrange(keys.deadletters(settings), min=start, max=end, count=PAGE)
        for row_id, fields in rows:
            record = _record(row_id, fields)
            if client_id is None or record["client_id"] == client_id:
                found.append(record)
        if len(rows) < PAGE:
            break
        last = rows[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return found if limit is None else found[:limit]


async def list_deadletters(
    redis: aioredis.Redis,
    settings: Settings,
    client_id: str | None = None,
    limit: int = 100,
    since: float | None = None,
    until: float | None = None,
) -> list[dict]:
    """Dead letters, oldest first: id, client_id, cursor, event_type, reason, attempts, failed_at (s), url."""
    return await _scan(redis, settings, client_id, limit, since, until)


async def replay_deadletters(
    redis: aioredis.Redis,
    settings: Settings,
    ids: list[str] | None = None,
    client_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> int:
    """Re-queue dead letters (the given ids, else all of `client_id`, else all), only those that
    failed within [since, until] when given; returns how many.

    A client whose endpoint was disabled (410, or the breaker) stays disabled: re-enable it first, or
    the replayed events wait in its requeue stream until it is.
    """
    records = await _scan(redis, settings, client_id, None, since, until)
    if ids is not None:
        wanted = set(ids)
        records = [record for record in records if record["id"] in wanted]
    script = redis.register_script(REPLAY_SCRIPT)
    moved = 0
    for record in records:
        if record["client_id"] and record["reason"] != "gap":
            requeue_key = keys.requeue(settings, record["client_id"])
            moved += int(await script(keys=[keys.deadletters(settings), requeue_key], args=[record["id"]]))
    return moved
