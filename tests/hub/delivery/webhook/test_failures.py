"""When delivery fails for good: dead letters and their replay, 410 Gone, refused URLs."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from hub import cli
from hub.delivery.webhook.deadletters import list_deadletters, replay_deadletters
from hub.delivery.webhook.router import WebhookRouter
from hub.redis import client as redis_client
from rthub_lms import keys as rkeys
from tests.hub.delivery.webhook.helpers import (
    Publisher,
    dead_letters_of_one_event,
    router_on,
    settings_for,
    until,
    verify_by_hand,
    write_client,
)
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.servers import RedisCluster, RedisServer


def test_receiver_down_past_the_last_attempt_dead_letters_then_replay_delivers(
    any_redis: RedisServer | RedisCluster, prefix: str
) -> None:
    up = {"value": False}
    with Receiver(lambda n: Reply(200 if up["value"] else 500)) as receiver:

        async def scenario() -> tuple[list[str], list[dict], int, str]:
            redis = redis_client(any_redis.url)
            settings = settings_for(any_redis.url, prefix, (0.1, 0.2))
            secret = await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(2)
            for entry in entries:
                await router.route(entry)
            dead: list[dict] = []

            async def dead_letters() -> None:
                dead[:] = await list_deadletters(redis, settings, "acme")

            async def both_dead() -> bool:
                await dead_letters()
                return len(dead) >= 2

            await until(both_dead)
            up["value"] = True
            replayed = await replay_deadletters(redis, settings, client_id="acme")
            await until(lambda: len(receiver.requests) == 8)
            left = await list_deadletters(redis, settings)
            await router.close()
            await redis.aclose()
            assert left == []
            return [e.cursor for e in entries], dead, replayed, secret

        cursors, dead, replayed, secret = asyncio.run(scenario())
    assert replayed == 2
    assert [d["cursor"] for d in dead] == cursors
    assert all(d["attempts"] == 3 and "HTTP 500" in d["reason"] and d["client_id"] == "acme" for d in dead)
    assert all(d["url"] == receiver.url and d["event_type"] for d in dead)
    # 3 failed attempts per event, then one delivery each after the replay, same webhook-id throughout.
    failed, delivered = receiver.requests[:6], receiver.requests[6:]
    assert [r.headers["webhook-id"] for r in failed] == [f"msg_{cursors[0]}"] * 3 + [f"msg_{cursors[1]}"] * 3
    assert [r.json["cursor"] for r in delivered] == cursors
    assert [r.headers["webhook-id"] for r in delivered] == [f"msg_{c}" for c in cursors]
    assert all(verify_by_hand(secret, r) for r in delivered)


def test_cli_lists_and_replays_dead_letters(redis_server: RedisServer, prefix: str, capsys) -> None:  # type: ignore[no-untyped-def]
    up = {"value": False}
    with Receiver(lambda n: Reply(200 if up["value"] else 503)) as receiver:

        async def fail_two() -> tuple[list[str], WebhookRouter, aioredis.Redis]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.05,))
            await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(3)
            for entry in entries:
                await router.route(entry)
            async def all_dead() -> bool:
                return len(await list_deadletters(redis, settings)) >= 3

            await until(all_dead)
            await router.close()
            await redis.aclose()
            return [e.cursor for e in entries]

        cursors = asyncio.run(fail_two())
        flags = ["--redis-url", redis_server.url, "--redis-prefix", prefix]
        assert cli.main(["deadletters", "list", *flags, "--json"]) == 0
        listed = orjson.loads(capsys.readouterr().out)
        assert [d["cursor"] for d in listed] == cursors
        assert cli.main(["deadletters", "list", *flags]) == 0
        assert "HTTP 503" in capsys.readouterr().out
        assert cli.main(["deadletters", "replay", *flags]) == 2
        capsys.readouterr()
        assert cli.main(["deadletters", "replay", listed[1]["id"], *flags, "--json"]) == 0
        assert orjson.loads(capsys.readouterr().out) == {"replayed": 1}

        async def deliver_replayed() -> list[dict]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (0.05,))
            up["value"] = True
            router = router_on(redis, settings)
            await router.start()
            await until(lambda: any(r.json["cursor"] == cursors[1] for r in receiver.requests[6:]))
            await router.close()
            left = await list_deadletters(redis, settings)
            await redis.aclose()
            return left

        left = asyncio.run(deliver_replayed())
    assert [d["cursor"] for d in left] == [cursors[0], cursors[2]]
    assert [r.json["cursor"] for r in receiver.requests[6:]] == [cursors[1]]


def test_410_gone_disables_the_endpoint_and_parks_its_queue(redis_server: RedisServer, prefix: str) -> None:
    with Receiver(lambda n: Reply(410)) as receiver:

        async def scenario() -> tuple[dict, list[dict], int, list[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (30,))
            await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            pubsub = redis.pubsub()
            await pubsub.subscribe(rkeys.changes_channel(settings))
            publisher = Publisher(redis, settings)
            entries = await publisher.entries(3)
            for entry in entries:
                await router.route(entry)
            await until(lambda: "acme" not in router.clients)
            later = await publisher.entries(2)
            for entry in later:
                await router.route(entry)
            await asyncio.sleep(0.3)  # a window: a delivery to the disabled webhook would arrive by now
            changes = []
            for _ in range(5):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None:
                    changes.append(message["data"].decode())
            await pubsub.aclose()
            record = await redis.hgetall(rkeys.client_key(settings, "acme"))
            fields = {k.decode(): v.decode() for k, v in record.items()}
            dead = await list_deadletters(redis, settings, "acme")
            outbox = await redis.xlen(rkeys.outbox(settings, "acme"))
            await router.close()
            await redis.aclose()
            return fields, dead, outbox, [e.cursor for e in entries], changes

        fields, dead, outbox, cursors, changes = asyncio.run(scenario())
    assert fields["webhook_status"] == "disabled" and "410" in fields["webhook_disabled_reason"]
    assert fields["status"] == "active"
    assert "acme" in changes
    assert len(receiver.requests) == 1
    assert [d["cursor"] for d in dead] == cursors
    assert all("410" in d["reason"] for d in dead)
    assert outbox == 0


def test_url_resolving_to_loopback_is_refused_without_allow_private(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        dead = asyncio.run(dead_letters_of_one_event(redis_server.url, prefix, url))
    assert receiver.requests == []
    assert "refused URL" in dead[0]["reason"] and "127.0.0.1" in dead[0]["reason"]


def test_a_receiver_aborts_one_message_and_the_next_is_delivered(redis_server: RedisServer, prefix: str) -> None:
    def reply(n: int) -> Reply:
        return Reply(422, {"webhook-delivery": "abort-message"}) if n == 0 else Reply(200)

    with Receiver(reply) as receiver:

        async def scenario() -> tuple[list[str], list[dict]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix, (5.0, 5.0))  # a retry would take 5 s
            await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(2)
            for entry in entries:
                await router.route(entry)
            await until(lambda: len(receiver.requests) == 2, timeout=3)
            dead = await list_deadletters(redis, settings, "acme")
            await router.close()
            await redis.aclose()
            return [e.cursor for e in entries], dead

        cursors, dead = asyncio.run(scenario())
    assert [r.json["cursor"] for r in receiver.requests] == cursors
    assert [(d["cursor"], d["attempts"]) for d in dead] == [(cursors[0], 1)]
    assert "aborted" in dead[0]["reason"]
