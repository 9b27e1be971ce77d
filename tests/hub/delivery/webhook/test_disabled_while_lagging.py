"""An endpoint disabled (410 Gone) while webhook routing stands behind the stream: the events it was
entitled to that routing had not reached are not dropped in silence. Found by the fault soak
(bench/soak): routing 68 s behind after Redis and hub faults, a 410 dead-lettered the 4 queued events,
and the 433 the router had still to read were neither delivered nor dead-lettered."""

from __future__ import annotations

import asyncio
import threading

import orjson
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.dev.simulator import SimulatedLMS
from hub.ingest.redis import RedisBroker
from rthub_lms import keys
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import FAST, renderer, router_on, settings_for
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.servers import RedisServer
from tests.waiting import async_wait_until


def _key(cursor: str) -> tuple[int, int]:
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq)


def test_events_routing_had_not_reached_when_the_endpoint_said_410_are_dead_lettered_or_in_a_gap(
    redis_server: RedisServer, prefix: str
) -> None:
    published = threading.Event()

    def reply(number: int) -> Reply:
        """200 for the first event; the 410 only once all 12 are published, so the endpoint is disabled
        while routing lags behind them (a 410 before they exist would leave them to the catch-up on enable)."""
        if number == 0:
            return Reply(200)
        published.wait(20)
        return Reply(410)

    receiver = Receiver(reply)
    with receiver:

        async def scenario() -> tuple[list[str], set[str], list[dict], int]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            registry = ClientRegistry(redis, settings)
            broker, lms = RedisBroker(redis, settings), SimulatedLMS(seed=8)
            held: set[str] = set()
            gate = asyncio.Event()
            real = renderer(redis, settings)

            async def render(entry, translator: str, consumer_type: str):  # type: ignore[no-untyped-def]
                if entry.cursor in held:
                    await gate.wait()  # routing lags from here on
                return await real(entry, translator, consumer_type)

            client, _ = await registry.create(name="gone", type="enterprise", translator="xapi", delivery="webhook",
                                              webhook_url=receiver.url, grant=[{}])
            router = router_on(redis, settings, FAST, render=render)
            await router.start()
            router.follow()
            try:
                events = []
                for number in range(12):
                    event = normalise(lms.next_event())
                    cursor = await broker.publish(event)
                    events.append(cursor)
                    if number == 1:  # the first two are routed (a page of their own) before routing lags
                        await async_wait_until(lambda: router.counts["routed"] >= 2, 10)
                    if number >= 2:  # from the third event on, render waits
                        held.add(cursor)
                published.set()

                async def disabled() -> bool:
                    found = await registry.get(client.client_id)
                    return found is not None and found.webhook_status == "disabled"

                await async_wait_until(disabled, 20)
                gate.set()
                await async_wait_until(lambda: client.client_id not in router.clients, 10)
            finally:
                await router.close()
            rows = await redis.xrange(keys.deadletters(settings, client.client_id))
            letters = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
            queued = {entry_id.decode() for entry_id, _ in await redis.xrange(keys.outbox(settings, client.client_id))}
            await redis.aclose()
            delivered = {orjson.loads(r.body)["cursor"] for r in receiver.requests if r.status == 200}
            return events, delivered | queued, letters, len(receiver.requests)

        events, delivered_or_queued, letters, requests = asyncio.run(scenario())
    assert requests >= 2, "the endpoint answered 410"
    dead = {letter["cursor"] for letter in letters if letter["reason"] != "gap"}
    gaps = [orjson.loads(letter["body"]) for letter in letters if letter["reason"] == "gap"]

    def accounted(cursor: str) -> bool:
        return (cursor in delivered_or_queued or cursor in dead
                or any(_key(gap["from"]) < _key(cursor) <= _key(gap["to"]) for gap in gaps))

    silent = [cursor for cursor in events if not accounted(cursor)]
    assert not silent, f"{len(silent)} of {len(events)} events neither delivered, queued, dead-lettered nor in a gap"
