"""Several hub instances on one Redis: each event queued once, delivered by one instance at a time."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from hub.delivery.webhook.deadletters import list_deadletters
from hub.delivery.webhook.router import WebhookRouter
from rthub_lms import keys as rkeys
from tests.hub.delivery.webhook.helpers import Publisher, router_on, settings_for, until, write_client
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.servers import RedisServer


def test_two_instances_deliver_each_event_once_in_order(redis_server: RedisServer, prefix: str) -> None:
    with Receiver(lambda n: Reply(500) if n % 7 == 3 else Reply(200)) as receiver:

        async def scenario() -> tuple[list[str], list[WebhookRouter], int]:
            settings = settings_for(redis_server.url, prefix, (0.05, 0.05, 0.05))
            one, two = aioredis.Redis.from_url(redis_server.url), aioredis.Redis.from_url(redis_server.url)
            await write_client(one, settings, "acme", receiver.url)
            routers = [router_on(r, settings) for r in (one, two)]
            for router in routers:
                await router.start()
            entries = await Publisher(one, settings).entries(40)
            # Each instance sees every live event, in order, at its own pace.
            await asyncio.gather(*(_route_all(router, entries) for router in routers))
            await until(lambda: len({r.headers["webhook-id"] for r in receiver.requests}) == 40)
            # the last reply reaches its router's count just after the receiver records the request
            await until(lambda: sum(router.delivery_counts()["delivered"] for router in routers) >= 40)
            delivered = sum(router.delivery_counts()["delivered"] for router in routers)
            for router in routers:
                await router.close()
            await one.aclose()
            await two.aclose()
            return [entry.cursor for entry in entries], routers, delivered

        cursors, routers, delivered_count = asyncio.run(scenario())
    delivered = [r.json["cursor"] for r in receiver.requests]
    answered_ok = [c for n, c in enumerate(delivered) if n % 7 != 3]
    assert answered_ok == cursors
    assert sum(router.counts["queued"] for router in routers) == 40
    assert sum(router.counts["already_queued"] for router in routers) == 40
    assert delivered_count == 40


async def _route_all(router: WebhookRouter, entries: list) -> None:
    for entry in entries:
        await router.route(entry)
        await asyncio.sleep(0)  # pacing: yield so that the two instances' routing interleaves


def test_a_dead_instances_lease_and_retry_state_are_taken_over(redis_server: RedisServer, prefix: str) -> None:
    with Receiver(lambda n: Reply(500)) as receiver:

        async def scenario() -> tuple[float, list[dict], list[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.05, 0.05))
            await write_client(redis, settings, "acme", receiver.url)
            [entry] = await Publisher(redis, settings).entries(1)
            outbox = rkeys.outbox(settings, "acme")
            await redis.xadd(outbox, {"b": '{"type":"event"}'}, id=entry.cursor)
            # A crashed instance held the lease and had made 2 of the 3 allowed attempts.
            await redis.set(rkeys.lease(settings, "acme"), "dead-instance", px=800)
            await redis.hset(
                rkeys.state(settings, "acme"),
                mapping={"source": outbox, "first": entry.cursor, "last": entry.cursor, "attempts": 2, "next_at": 0},
            )
            started = time.time()
            router = router_on(redis, settings)
            await router.start()
            dead: list[dict] = []

            async def dead_letters() -> list[dict]:
                dead[:] = await list_deadletters(redis, settings)
                return dead

            await until(dead_letters)
            await router.close()
            await redis.aclose()
            return started, dead, [entry.cursor]

        started, dead, cursors = asyncio.run(scenario())
    assert len(receiver.requests) == 1  # the third and last attempt only
    assert receiver.requests[0].at - started >= 0.6  # not before the dead instance's lease expired
    assert dead[0]["cursor"] == cursors[0] and dead[0]["attempts"] == 3
