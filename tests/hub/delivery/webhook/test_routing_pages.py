"""Routing a page of the stream in one round trip: per-client order, idempotency across two routers, and
a Redis error in the middle of a page losing nothing."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from rthub_lms import keys
from tests.hub.delivery.webhook.helpers import Publisher, router_on, settings_for, until, write_client
from tests.hub.delivery.webhook.receiver import Receiver
from tests.servers import RedisServer


def test_two_routers_routing_the_same_pages_queue_each_event_once_per_client_in_order(
    redis_server: RedisServer, prefix: str
) -> None:
    async def scenario() -> tuple[list[str], dict[str, list[str]], int, int]:
        one, two = aioredis.Redis.from_url(redis_server.url), aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix, (60.0,))  # a refused first POST is retried in a minute
        for client_id in ("a", "b"):
            await write_client(one, settings, client_id, "http://127.0.0.1:9/refused")
        routers = [router_on(redis, settings) for redis in (one, two)]
        for router in routers:
            await router.start()
        entries = await Publisher(one, settings).entries(30)
        # Both routers route every entry, in pages of different sizes, side by side.
        await asyncio.gather(*(_pages(router, entries, size) for router, size in zip(routers, (7, 11), strict=True)))
        queued = {}
        for client_id in ("a", "b"):
            rows = await one.xrange(keys.outbox(settings, client_id))
            queued[client_id] = [row_id.decode() for row_id, _ in rows]
        counts = sum(router.counts["queued"] for router in routers), sum(
            router.counts["already_queued"] for router in routers)
        for router in routers:
            await router.close()
        await one.aclose()
        await two.aclose()
        return [entry.cursor for entry in entries], queued, *counts

    cursors, queued, new, already = asyncio.run(scenario())
    assert queued == {"a": cursors, "b": cursors}
    assert (new, already) == (60, 60)


async def _pages(router, entries: list, size: int) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(entries), size):
        await router.route_page(entries[start:start + size])
        await asyncio.sleep(0)  # let the other router's pages interleave


def test_a_redis_error_in_the_middle_of_a_page_loses_nothing_and_holds_the_position(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver() as first, Receiver() as second:

        async def scenario() -> tuple[list[str], bool]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "a", first.url)
            await write_client(redis, settings, "b", second.url)
            # b's outbox key holds a string: every append for b fails (WRONGTYPE), a's succeed.
            await redis.set(keys.outbox(settings, "b"), "not a stream")
            router = router_on(redis, settings)
            await router.start()
            start = await router.position.load()
            router.follow()
            entries = await Publisher(redis, settings).entries(20)
            await until(lambda: router.counts["route_retries"] >= 2)
            held = await router.position.load() == start
            await redis.delete(keys.outbox(settings, "b"))
            await until(lambda: len(first.requests) == 20 and len(second.requests) == 20)
            await until(lambda: router.counts["routed"] == 20)
            await router.close()
            await redis.aclose()
            return [entry.cursor for entry in entries], held

        cursors, held = asyncio.run(scenario())
    assert held, "the position moved past a page not appended for every client"
    assert [orjson.loads(r.body)["cursor"] for r in first.requests] == cursors
    assert [orjson.loads(r.body)["cursor"] for r in second.requests] == cursors
