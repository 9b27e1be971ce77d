"""Signed, retried, ordered, batched delivery from a real router to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import time

import orjson
import redis.asyncio as aioredis
from standardwebhooks.webhooks import Webhook

from hub.delivery.webhook.worker import DeliveryOptions
from hub.ingest import cursor_key
from tests.hub.delivery.webhook.helpers import (
    Publisher,
    renderer,
    router_on,
    settings_for,
    until,
    verify_by_hand,
    write_client,
)
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.servers import RedisServer


def test_500_then_200_is_delivered_once_with_the_same_id_and_a_valid_signature(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver(lambda n: Reply(500) if n < 2 else Reply(200)) as receiver:

        async def scenario() -> tuple[str, list[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.1, 0.1, 5))
            secret = await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            [entry] = await Publisher(redis, settings).entries(1)
            await router.route(entry)
            await until(lambda: len(receiver.requests) == 3)
            await asyncio.sleep(0.3)  # a window: a fourth attempt (none is due for 5 s) would arrive by now
            await router.close()
            await redis.aclose()
            return secret, [entry.cursor]

        secret, cursors = asyncio.run(scenario())
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {f"msg_{cursors[0]}"}
    assert all(verify_by_hand(secret, r) for r in receiver.requests)
    assert not verify_by_hand("whsec_" + "A" * 32, receiver.requests[-1])
    body = receiver.requests[-1].json
    assert body["type"] == "event" and body["cursor"] == cursors[0] and "data" in body and body["event_type"]
    assert receiver.requests[-1].headers["content-type"] == "application/json"


def test_signature_verifies_with_the_reference_library(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:

        async def scenario() -> str:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            secret = await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            for entry in await Publisher(redis, settings).entries(3):
                await router.route(entry)
            await until(lambda: len(receiver.requests) == 3)
            await router.close()
            await redis.aclose()
            return secret

        secret = asyncio.run(scenario())
    for request in receiver.requests:
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "event"


def test_events_arrive_in_cursor_order_and_retry_after_is_honoured(redis_server: RedisServer, prefix: str) -> None:
    with Receiver(lambda n: Reply(503, {"Retry-After": "1"}) if n == 0 else Reply(200)) as receiver:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.05, 5))
            await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(20)
            for entry in entries:
                await router.route(entry)
            await until(lambda: len(receiver.requests) == 21)
            await router.close()
            await redis.aclose()
            return [entry.cursor for entry in entries]

        cursors = asyncio.run(scenario())
    delivered = [r.json["cursor"] for r in receiver.requests[1:]]
    assert delivered == cursors
    assert sorted(delivered, key=cursor_key) == delivered
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.9  # waited Retry-After, not the 0.05 s step


def test_batches_follow_the_contract_body(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, webhook_batch_max="5", webhook_batch_wait="0.3")
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(12)
            for entry in entries:
                await router.route(entry)
            await until(lambda: sum(len(r.json["events"]) for r in receiver.requests) == 12)
            await router.close()
            await redis.aclose()
            return [entry.cursor for entry in entries]

        cursors = asyncio.run(scenario())
    bodies = [r.json for r in receiver.requests]
    assert all(body["type"] == "batch" for body in bodies)
    assert all(1 <= len(body["events"]) <= 5 for body in bodies)
    assert [event["cursor"] for body in bodies for event in body["events"]] == cursors
    assert all(event["type"] == "event" for body in bodies for event in body["events"])
    first = bodies[0]["events"]
    assert receiver.requests[0].headers["webhook-id"] == f"msg_{first[0]['cursor']}_{first[-1]['cursor']}"


def test_a_failing_endpoint_does_not_delay_another_client(redis_server: RedisServer, prefix: str) -> None:
    with Receiver(lambda n: Reply(500)) as broken, Receiver() as healthy:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (30, 60))
            await write_client(redis, settings, "broken", broken.url)
            await write_client(redis, settings, "healthy", healthy.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(10)
            for entry in entries:
                await router.route(entry)
            await until(lambda: len(healthy.requests) == 10, timeout=5)
            await router.close()
            await redis.aclose()
            return [entry.cursor for entry in entries]

        cursors = asyncio.run(scenario())
    assert [r.json["cursor"] for r in healthy.requests] == cursors
    assert len(broken.requests) == 1


def test_grants_decide_who_gets_what(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as mit, Receiver() as everyone:

        async def scenario() -> list[dict]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "mit", mit.url, grant=[{"orgs": ["MITx"]}])
            await write_client(redis, settings, "all", everyone.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings, seed=3).entries(40)
            for entry in entries:
                await router.route(entry)
            in_mitx = sum("MITx" in e.event["context"].get("course_id", "") for e in entries)
            await until(lambda: len(everyone.requests) == 40 and len(mit.requests) >= in_mitx)
            await router.close()
            await redis.aclose()
            return [{"cursor": e.cursor, "course": e.event["context"].get("course_id", "")} for e in entries]

        facts = asyncio.run(scenario())
    expected = [f["cursor"] for f in facts if "MITx" in f["course"]]
    assert expected and len(expected) < 40
    assert [r.json["cursor"] for r in mit.requests] == expected


def test_body_is_the_socket_event_frame(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:

        async def scenario() -> bytes:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url)
            render = renderer(redis, settings)
            router = router_on(redis, settings, render=render)
            await router.start()
            [entry] = await Publisher(redis, settings).entries(1)
            await router.route(entry)
            await until(lambda: len(receiver.requests) == 1)
            frame = await render(entry, "xapi", "enterprise")
            await router.close()
            await redis.aclose()
            return frame.text.encode()

        frame = asyncio.run(scenario())
    assert receiver.requests[0].body == frame
    assert set(orjson.loads(frame)) == {"type", "cursor", "event_type", "data"}


def test_a_receiver_slower_than_the_timeout_is_retried(redis_server: RedisServer, prefix: str) -> None:
    def respond(n: int) -> Reply:
        if n == 0:
            time.sleep(1.0)  # deliberately slower than the 0.3 s delivery timeout
        return Reply()

    with Receiver(respond) as receiver:

        async def scenario() -> tuple[str, int]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.1, 5))
            await write_client(redis, settings, "acme", receiver.url)
            options = DeliveryOptions(timeout=0.3, lease_ttl_ms=1000, poll=0.1)
            router = router_on(redis, settings, options)
            await router.start()
            [entry] = await Publisher(redis, settings).entries(1)
            await router.route(entry)
            await until(lambda: len(receiver.requests) == 2)
            await asyncio.sleep(0.2)  # a window: a third attempt of the delivered event would arrive by now
            failed = router.delivery_counts()["failed_attempts"]
            await router.close()
            await redis.aclose()
            return entry.cursor, failed

        cursor, failed = asyncio.run(scenario())
    assert failed == 1
    assert [r.headers["webhook-id"] for r in receiver.requests] == [f"msg_{cursor}"] * 2
    assert receiver.requests[1].at - receiver.requests[0].at < 0.9  # did not wait for the slow reply
