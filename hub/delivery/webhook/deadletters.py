"""The dead-letter store: events whose delivery failed for good, listed and replayed on demand.

`{prefix}{<client>}:deadletters` is one stream per client (in the client's slot, so giving up on a
batch stays one lease-fenced script on a cluster); each entry keeps the client id, cursor, the exact
body that failed, the reason, the attempts made, when it failed and the URL. A dead letter's id is
`<client id>/<stream entry id>`; listings merge the clients' streams oldest first. Replay moves an
entry, atomically, to its client's requeue stream, which the delivery worker drains before the
outbox; the `webhook-id` is derived from the cursor, so a receiver that saw it before can tell.
Both the CLI (`rthub deadletters`) and the admin API call these functions. The store is capped
(`RTHUB_WEBHOOK_DEADLETTERS_MAXLEN`, oldest dropped first), and entry ids are failure times, so
"every failed message of a client between two times" is one range read. `gap` records (events that
left the stream before they were routed) and `no_external_id` records (an `lms-external-id` client's
event about a learner the LMS mirrored no external id for) carry no rendered event and are listed,
never replayed (`record_unsent` writes both).
"""

from __future__ import annotations

import time
from typing import Annotated, TypedDict

import orjson

from hub.config import Settings
from hub.delivery.webhook.outbox import field
from hub.redis import Client, text
from rthub_lms import keys

PAGE = 500
UNREPLAYABLE = ("gap", "no_external_id")  # reasons of records with no rendered event to send again

# KEYS: the client's dead letters and requeue stream. ARGV: stream entry id.
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


class DeadLetter(TypedDict):
    """A delivery that failed for good (or a `gap`: events that left the stream before they were routed)."""

    id: Annotated[str, {"description": "<client id>/<stream entry id>"}]
    client_id: str
    cursor: str | None
    event_type: Annotated[str | None, {"description": "null for a batch or a gap"}]
    reason: str | None
    attempts: int
    failed_at: Annotated[float, {"description": "unix seconds"}]
    url: str | None


async def record_unsent(
    redis: Client, settings: Settings, client_id: str, cursor: str, body: dict, reason: str, url: str
) -> None:
    """A record of events that were never rendered for the client (`UNREPLAYABLE` reasons): listed, not
    replayed."""
    await redis.xadd(
        keys.deadletters(settings, client_id),
        {"client_id": client_id, "cursor": cursor, "body": orjson.dumps(body), "reason": reason,
         "attempts": 0, "failed_at": int(time.time() * 1000), "url": url},
        maxlen=settings.webhook_deadletters_maxlen, approximate=True,
    )


def replayable(record: DeadLetter) -> bool:
    return (record["reason"] or "").partition(":")[0] not in UNREPLAYABLE


def _record(client_id: str, row_id: bytes | str, fields: dict) -> DeadLetter:
    body = field(fields, "body") or ""
    try:
        event_type = orjson.loads(body).get("event_type")
    except (orjson.JSONDecodeError, AttributeError):
        event_type = None
    return {
        "id": f"{client_id}/{text(row_id)}",
        "client_id": client_id,
        "cursor": field(fields, "cursor"),
        "event_type": event_type,
        "reason": field(fields, "reason"),
        "attempts": int(field(fields, "attempts") or 0),
        "failed_at": int(field(fields, "failed_at") or 0) / 1000,
        "url": field(fields, "url"),
    }


def _order(record: DeadLetter) -> tuple[int, int, str]:
    """Oldest first across clients: by entry id (failure time in ms, then sequence), then client."""
    owner, _, entry_id = record["id"].partition("/")
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0), owner


def _bound(seconds: float | None, default: str) -> str:
    return default if seconds is None else str(max(int(seconds * 1000), 0))


async def _scan(
    redis: Client,
    settings: Settings,
    client_id: str | None,
    limit: int | None,
    since: float | None = None,
    until: float | None = None,
) -> list[DeadLetter]:
    """Dead letters oldest first, optionally of one client and failed within [since, until] (unix s),
    at most `limit` (None: all)."""
    if client_id is not None:
        client_ids = [client_id]
    else:
        client_ids = sorted(text(item) for item in await redis.smembers(keys.clients_key(settings)))
    end = _bound(until, "+")
    found: list[DeadLetter] = []
    for one in client_ids:
        start = _bound(since, "-")
        while True:
            rows = await redis.xrange(keys.deadletters(settings, one), min=start, max=end, count=PAGE)
            found += [_record(one, row_id, fields) for row_id, fields in rows]
            if len(rows) < PAGE or (limit is not None and client_id is not None and len(found) >= limit):
                break
            start = "(" + text(rows[-1][0])
    found.sort(key=_order)
    return found if limit is None else found[:limit]


async def list_deadletters(
    redis: Client,
    settings: Settings,
    client_id: str | None = None,
    limit: int = 100,
    since: float | None = None,
    until: float | None = None,
) -> list[DeadLetter]:
    """Dead letters, oldest first: id, client_id, cursor, event_type, reason, attempts, failed_at (s), url."""
    return await _scan(redis, settings, client_id, limit, since, until)


async def replay_deadletters(
    redis: Client,
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
    return sum((await replay_by_client(redis, settings, ids, client_id, since, until)).values())


async def replay_by_client(
    redis: Client,
    settings: Settings,
    ids: list[str] | None = None,
    client_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, int]:
    """`replay_deadletters`, counted per client (clients with none replayed left out), so a caller can
    say which replayed events wait for a disabled endpoint."""
    records = await _scan(redis, settings, client_id, None, since, until)
    if ids is not None:
        wanted = set(ids)
        records = [record for record in records if record["id"] in wanted]
    script = redis.register_script(REPLAY_SCRIPT)
    moved: dict[str, int] = {}
    for record in records:
        if replayable(record):
            owner, _, entry_id = record["id"].partition("/")
            replay_keys = [keys.deadletters(settings, owner), keys.requeue(settings, owner)]
            if await script(keys=replay_keys, args=[entry_id]):
                moved[owner] = moved.get(owner, 0) + 1
    return moved


async def stored_deadletters(redis: Client, settings: Settings, client_id: str) -> int:
    """How many dead letters (gaps included) one client has now; replayed ones are no longer counted."""
    return int(await redis.xlen(keys.deadletters(settings, client_id)))


async def write_gap(redis: Client, settings: Settings, client_id: str, url: str, after: str, upto: str,
                    detail: str = "") -> None:
    """One `gap` dead letter: the client's events after `after` up to `upto` were never queued for it
    (retention dropped them before routing read them, or its endpoint was disabled before routing
    reached them). Not replayable: the range names what to look for elsewhere."""
    body = {"type": "gap", "from": after, "to": upto, **({"detail": detail} if detail else {})}
    await record_unsent(redis, settings, client_id, after, body, "gap", url)
