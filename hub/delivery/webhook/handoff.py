"""Handoff backfill: what a websocket+webhook client's sockets may have missed when they all left.

`presence` pushes a handoff cursor H when the client's last socket in the cluster goes away. While
no socket was live nothing was queued, so every entitled event in (H, newest in the stream] that is
not already in the outbox is rendered and queued on the client's requeue stream, page by page. The
handoff cursor advances with each page in the same transaction, so a crash mid-way resumes instead
of starting over; events delivered twice carry the same `webhook-id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from hub.config import Settings
from hub.delivery.webhook.clients import WebhookClient
from hub.delivery.webhook.outbox import Outbox
from hub.delivery.websocket.connection import Frame
from hub.ingest import Entry, cursor_key
from hub.ingest.redis import RedisBroker
from rthub_lms import keys
from rthub_lms.grants import event_facts
from rthub_lms.keys import stream_key

Render = Callable[[Entry, str, str], Awaitable[Frame | None]]

PAGE = 500


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def backfill(
    redis: aioredis.Redis,
    settings: Settings,
    client: WebhookClient,
    render: Render,
    outbox: Outbox,
    broker: RedisBroker,
) -> int:
    """Work off every pending handoff of `client`; returns how many events were queued."""
    handoff_key = keys.handoff(settings, client.client_id)
    requeue_key = keys.requeue(settings, client.client_id)
    queued_total = 0
    while (raw := await redis.lindex(handoff_key, 0)) is not None:
        after = _text(raw)
        top = await redis.xrevrange(stream_key(settings), count=1)
        upto = _text(top[0][0]) if top else after
        already = await outbox.pending_ids(client.client_id, after, upto)
        cursor = after
        while cursor_key(cursor) < cursor_key(upto):
            page = [e for e in await broker.history(cursor, PAGE) if cursor_key(e.cursor) <= cursor_key(upto)]
            if not page:
                break
            items: list[tuple[str, str]] = []
            for entry in page:
                if entry.cursor in already or not client.matcher.matches(event_facts(entry.event)):
                    continue
                frame = await render(entry, client.translator, client.consumer_type)
                if frame is not None:
                    items.append((entry.cursor, frame.text))
            cursor = page[-1].cursor
            pipe = redis.pipeline(transaction=True)
            for item_cursor, body in items:
                pipe.xadd(requeue_key, {"c": item_cursor, "b": body})
            pipe.lset(handoff_key, 0, cursor)
            await pipe.execute()
            queued_total += len(items)
        await redis.lpop(handoff_key)
    return queued_total
