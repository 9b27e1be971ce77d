"""The outbox on a real Redis: many clients' events appended in one round trip, the head read on."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from hub.delivery.webhook.outbox import Outbox
from rthub_lms import keys
from tests.hub.delivery.webhook.helpers import settings_for
from tests.servers import RedisServer


def _rows(client_ids: list[str], cursors: list[str]) -> list[tuple[str, str, str]]:
    """A routed page: each cursor for each client, in cursor order."""
    return [(cursor, client_id, f"{client_id}:{cursor}") for cursor in cursors for client_id in client_ids]


def test_a_page_keeps_each_clients_order_and_appending_it_again_queues_nothing(
    redis_server: RedisServer, prefix: str
) -> None:
    async def scenario() -> tuple[dict, dict, dict, dict[str, list[str]]]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        outbox = Outbox(redis, settings)
        cursors = [f"{n}-0" for n in range(1, 41)]
        first = await outbox.append(_rows(["a", "b", "c"], cursors[:30]))
        # A second router behind the first sends the same page, then one reaching further.
        again = await outbox.append(_rows(["a", "b", "c"], cursors[:30]))
        further = await outbox.append(_rows(["a", "b"], cursors[20:]))
        queued = {}
        for client_id in ("a", "b", "c"):
            rows = await redis.xrange(keys.outbox(settings, client_id))
            queued[client_id] = [fields[b"b"].decode() for _, fields in rows]
        await redis.aclose()
        return first, again, further, queued

    first, again, further, queued = asyncio.run(scenario())
    assert first == {"a": 30, "b": 30, "c": 30}
    assert again == {"a": 0, "b": 0, "c": 0}
    assert further == {"a": 10, "b": 10}
    for client_id, count in (("a", 40), ("b", 40), ("c", 30)):
        assert queued[client_id] == [f"{client_id}:{n}-0" for n in range(1, count + 1)]


def test_what_a_page_pushes_past_the_cap_is_counted(redis_server: RedisServer, prefix: str) -> None:
    async def scenario() -> tuple[int, int]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix).with_overrides(webhook_outbox_maxlen=50)
        outbox = Outbox(redis, settings)
        for start in range(1, 1001, 250):
            await outbox.append(_rows(["a"], [f"{n}-0" for n in range(start, start + 250)]))
        kept = await redis.xlen(keys.outbox(settings, "a"))
        overflowed = int(await redis.hget(keys.health(settings, "a"), "overflowed") or 0)
        await redis.aclose()
        return kept, overflowed

    kept, overflowed = asyncio.run(scenario())
    assert kept < 1000 and kept + overflowed == 1000


def test_the_head_is_read_on_from_what_was_read_and_a_requeued_event_goes_first(
    redis_server: RedisServer, prefix: str
) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        outbox = Outbox(redis, settings)
        await outbox.append(_rows(["a"], ["1-0", "2-0"]))
        read = await outbox.head("a", 10)
        await outbox.append(_rows(["a"], ["3-0", "4-0"]))
        read_on = await outbox.head("a", 3, read)
        await redis.xadd(keys.requeue(settings, "a"), {"c": "0-5", "b": "replayed"})
        requeued = await outbox.head("a", 10, read_on)
        requeued_on = await outbox.head("a", 10, requeued)
        await redis.aclose()
        return ([item.cursor for item in read], [item.cursor for item in read_on],
                [item.body for item in requeued], [item.body for item in requeued_on])

    read, read_on, requeued, requeued_on = asyncio.run(scenario())
    assert read == ["1-0", "2-0"]
    assert read_on == ["1-0", "2-0", "3-0"]
    assert requeued == ["replayed"]
    assert requeued_on == ["replayed"]
