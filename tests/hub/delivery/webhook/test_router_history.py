"""The webhook router against an in-memory history (`MemoryBroker`): it reads the stream only through
`Broker`, so paging, bad entries and retention gaps are driven without a Redis stream. Outboxes, the
routing position and dead letters are still in a real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from hub.delivery.webhook.deadletters import list_deadletters
from hub.delivery.webhook.router import WebhookRouter
from hub.ingest import Entry
from hub.ingest.memory import MemoryBroker
from rthub_lms import keys as rkeys
from tests.hub.delivery.webhook.helpers import FAST, Publisher, renderer, settings_for, until, write_client
from tests.hub.delivery.webhook.receiver import Receiver
from tests.servers import RedisServer


def _delivered(receiver: Receiver, path: str = "/hook") -> list[str]:
    return [r.json["cursor"] for r in receiver.requests if r.status == 200 and r.path == path]


async def _saved(redis: aioredis.Redis, router: WebhookRouter) -> str:
    return (await redis.get(router.position.key)).decode()


def test_the_router_skips_bad_entries_and_saves_its_position_only_after_the_appends(
    redis_server: RedisServer, prefix: str
) -> None:
    async def scenario(receiver: Receiver) -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        broker = MemoryBroker()
        publisher = Publisher(redis, settings, broker=broker)
        [before] = await publisher.entries(1)  # published before routing starts: not routed
        await write_client(redis, settings, "acme", receiver.url)
        render, rendering, release = renderer(redis, settings), asyncio.Event(), asyncio.Event()

        async def held(entry: Entry, translator: str, consumer_type: str) -> object:
            rendering.set()
            await release.wait()
            return await render(entry, translator, consumer_type)

        router = WebhookRouter(broker, redis, settings, held, options=FAST)
        await router.start()
        [first] = await publisher.entries(1)
        await broker.append(b"not an event")
        [second] = await publisher.entries(1)
        router.follow()
        await asyncio.wait_for(rendering.wait(), 5)
        # The page is being routed: nothing appended yet, so the position has not moved.
        assert await _saved(redis, router) == before.cursor
        assert await redis.xlen(rkeys.outbox(settings, "acme")) == 0
        release.set()
        await until(lambda: len(_delivered(receiver)) == 2)
        assert _delivered(receiver) == [first.cursor, second.cursor]  # the bad entry between is skipped
        assert await _saved(redis, router) == second.cursor
        trailing = await broker.append(b"{}")  # a page of bad entries only: the position passes it
        async def passed() -> bool:
            return await _saved(redis, router) == trailing

        await until(passed)
        await router.close()
        await redis.aclose()

    with Receiver() as receiver:
        asyncio.run(asyncio.wait_for(scenario(receiver), 20))


def test_a_trimmed_history_gives_each_webhook_client_one_gap_dead_letter(
    redis_server: RedisServer, prefix: str
) -> None:
    async def scenario(receiver: Receiver) -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        broker = MemoryBroker(maxlen=3)
        publisher = Publisher(redis, settings, broker=broker)
        [position] = await publisher.entries(1)
        await write_client(redis, settings, "one", receiver.url)
        await write_client(redis, settings, "two", receiver.url.replace("/hook", "/two"))
        router = WebhookRouter(broker, redis, settings, renderer(redis, settings), options=FAST)
        await router.start()
        published = [entry.cursor for entry in await publisher.entries(5)]
        retained = published[2:]  # the first two left the history before routing read them
        router.follow()
        await until(lambda: len(_delivered(receiver)) == 3 and len(_delivered(receiver, "/two")) == 3)
        assert _delivered(receiver) == _delivered(receiver, "/two") == retained
        dead = await list_deadletters(redis, settings)
        assert sorted((d["client_id"], d["reason"], d["cursor"]) for d in dead) == [
            ("one", "gap", position.cursor), ("two", "gap", position.cursor)
        ]
        assert router.counts["gaps"] == 2
        assert await _saved(redis, router) == retained[-1]
        await router.close()
        await redis.aclose()

    with Receiver() as receiver:
        asyncio.run(asyncio.wait_for(scenario(receiver), 20))
