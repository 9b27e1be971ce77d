"""websocket+webhook clients: webhooks only while no socket is live; nothing lost at either switch."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from hub.control.presence import Presence
from hub.delivery.webhook.router import WebhookRouter
from rthub_lms import keys as rkeys
from tests.servers import RedisServer
from tests.webhooks.helpers import FAST, Publisher, renderer, settings_for, until, write_client
from tests.webhooks.receiver import Receiver


def test_socket_connected_means_no_webhook_and_disconnect_hands_over_without_gap(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], list[str], list[str], dict]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            await write_client(redis, settings, "plain", receiver.url.replace("/hook", "/plain"))
            router = WebhookRouter(redis, settings, renderer(redis, settings), options=FAST)
            await router.start()
            presence = Presence(redis, settings)
            publisher = Publisher(redis, settings)

            await presence.connected("acme", handoff_owed=True)
            while_connected = await publisher.entries(5)
            for entry in while_connected:
                await router.route(entry)
            await asyncio.sleep(0.4)
            acme_while_connected = [r for r in receiver.requests if _is_acme(r)]
            assert acme_while_connected == []
            assert await redis.xlen(rkeys.outbox(settings, "acme")) == 0

            # The socket was sent up to the third event, then dropped.
            await presence.disconnected("acme", while_connected[2].cursor)
            after = await publisher.entries(3)
            for entry in after:
                await router.route(entry)
            wanted = {e.cursor for e in while_connected[3:] + after}
            await until(lambda: wanted <= {r.json["cursor"] for r in receiver.requests if _is_acme(r)})

            # The client is back on a socket: webhooks stop again.
            seen = len(receiver.requests)
            await presence.connected("acme", handoff_owed=True)
            back = await publisher.entries(3)
            for entry in back:
                await router.route(entry)
            await asyncio.sleep(0.4)
            late = [r.json["cursor"] for r in receiver.requests[seen:] if _is_acme(r)]
            counts = dict(router.counts)
            await presence.disconnected("acme", back[-1].cursor)
            await router.close()
            await redis.aclose()
            return [e.cursor for e in while_connected + after + back], [e.cursor for e in back], late, counts

        everything, back, late, counts = asyncio.run(scenario())
    plain = [r.json["cursor"] for r in receiver.requests if not _is_acme(r)]
    assert plain == everything  # a webhook-only client never cares about presence
    assert not set(back) & set(late)
    acme = [r for r in receiver.requests if _is_acme(r)]
    assert all(r.headers["webhook-id"] == f"msg_{r.json['cursor']}" for r in acme)
    assert counts["socket_live"] == 8


def _is_acme(request) -> bool:  # type: ignore[no-untyped-def]
    return request.path == "/hook"


def test_a_crashed_instances_sockets_expire_and_their_events_are_backfilled(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver() as receiver:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            router = WebhookRouter(redis, settings, renderer(redis, settings), options=FAST)
            await router.start()
            publisher = Publisher(redis, settings)
            crashed = Presence(redis, settings, ttl_ms=300)  # connects, then never refreshes nor disconnects
            await crashed.connected("acme", handoff_owed=True)
            during = await publisher.entries(3)
            for entry in during:
                await router.route(entry)
            assert router.counts["socket_live"] == 3
            await asyncio.sleep(0.4)
            after = await publisher.entries(2)
            for entry in after:
                await router.route(entry)
            wanted = [e.cursor for e in during + after]
            await until(lambda: set(wanted) <= {r.json["cursor"] for r in receiver.requests})
            await router.close()
            await redis.aclose()
            return wanted

        wanted = asyncio.run(scenario())
    assert sorted({r.json["cursor"] for r in receiver.requests}) == sorted(wanted)


def test_a_refreshed_presence_stays_live_and_close_hands_over(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], int]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            router = WebhookRouter(redis, settings, renderer(redis, settings), options=FAST)
            await router.start()
            presence = Presence(redis, settings, ttl_ms=300, last_cursors=lambda: {"acme": None})
            presence.start()
            await presence.connected("acme", handoff_owed=True)
            await asyncio.sleep(0.8)  # well past one ttl: only refreshing keeps it live
            entries = await Publisher(redis, settings).entries(2)
            for entry in entries:
                await router.route(entry)
            before_close = len(receiver.requests)
            await presence.close()
            await until(lambda: {e.cursor for e in entries} <= {r.json["cursor"] for r in receiver.requests})
            await router.close()
            await redis.aclose()
            return [e.cursor for e in entries], before_close

        cursors, before_close = asyncio.run(scenario())
    assert before_close == 0
    assert {r.json["cursor"] for r in receiver.requests} == set(cursors)


def test_only_websocket_webhook_clients_are_owed_a_handoff(redis_server: RedisServer, prefix: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        await write_client(redis, settings, "sockets", "http://127.0.0.1:9/", delivery="websocket")
        await write_client(redis, settings, "both", "http://127.0.0.1:9/", delivery="websocket+webhook")
        presence = Presence(redis, settings)
        for client_id in ("sockets", "both"):
            await presence.connected(client_id, handoff_owed=client_id == "both")
            await presence.connected(client_id, handoff_owed=client_id == "both")
            await presence.disconnected(client_id, None)
        still_live = await redis.llen(rkeys.handoff(settings, "both"))
        for client_id in ("sockets", "both"):
            await presence.disconnected(client_id, None)
        handoffs = rkeys.handoff(settings, "sockets"), rkeys.handoff(settings, "both")
        lengths = await redis.llen(handoffs[0]), await redis.llen(handoffs[1])
        await redis.aclose()
        return still_live, *lengths

    still_live, sockets, both = asyncio.run(scenario())
    assert (still_live, sockets, both) == (0, 0, 1)
