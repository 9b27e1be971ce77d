"""websocket+webhook clients: webhooks only while no socket is live; nothing lost at either switch."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis.asyncio as aioredis

from hub.control.presence import Presence
from hub.ingest.redis import RedisBroker
from rthub_lms import keys as rkeys
from tests.hub.delivery.webhook.helpers import Publisher, router_on, settings_for, until, write_client
from tests.hub.delivery.webhook.receiver import Receiver
from tests.servers import RedisServer


def test_a_live_socket_holds_webhooks_and_the_switch_back_keeps_cursor_order(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], list[str], list[str], list[str], int]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = replace(settings_for(redis_server.url, prefix), webhook_handoff_margin=0.2)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            await write_client(redis, settings, "plain", receiver.url.replace("/hook", "/plain"))
            router = router_on(redis, settings)
            await router.start()
            tip = RedisBroker(redis, settings).tip
            presence = Presence(redis, settings, tip=tip)
            publisher = Publisher(redis, settings)

            await presence.connected("acme", handoff_owed=True)
            while_connected = await publisher.entries(5)
            for entry in while_connected:
                await router.route(entry)
            # a window, and time past the 0.2 s margin: a webhook not held would arrive by now
            await asyncio.sleep(0.4)
            held = [r.json["cursor"] for r in receiver.requests if _is_acme(r)]
            queued = await redis.xlen(rkeys.outbox(settings, "acme"))

            # The socket was sent up to the third event (longer ago than the margin), then dropped.
            await presence.disconnected("acme", while_connected[2].cursor)
            after = await publisher.entries(3)
            for entry in after:
                await router.route(entry)
            wanted = [e.cursor for e in while_connected[3:] + after]
            await until(lambda: set(wanted) <= {r.json["cursor"] for r in receiver.requests if _is_acme(r)})

            # The client is back on a socket: webhooks hold again.
            seen = len(receiver.requests)
            await presence.connected("acme", handoff_owed=True)
            back = await publisher.entries(3)
            for entry in back:
                await router.route(entry)
            await asyncio.sleep(0.4)  # a window: a webhook not held by the new socket would arrive by now
            late = [r.json["cursor"] for r in receiver.requests[seen:] if _is_acme(r)]
            await router.close()
            await redis.aclose()
            everything = [e.cursor for e in while_connected + after + back]
            return everything, held, wanted, late, queued

        everything, held, wanted, late, queued = asyncio.run(scenario())
    plain = [r.json["cursor"] for r in receiver.requests if not _is_acme(r)]
    assert plain == everything  # a webhook-only client never cares about presence
    assert held == [] and queued == 5  # queued in order, held while the socket is live
    acme = [r for r in receiver.requests if _is_acme(r)]
    assert [r.json["cursor"] for r in acme] == wanted  # what the socket had is skipped, the rest in order
    assert late == []
    assert all(r.headers["webhook-id"] == f"msg_{r.json['cursor']}" for r in acme)


def _is_acme(request) -> bool:  # type: ignore[no-untyped-def]
    return request.path == "/hook"


def test_a_crashed_instances_sockets_expire_and_their_events_are_delivered_in_order(
    redis_server: RedisServer, prefix: str
) -> None:
    with Receiver() as receiver:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            router = router_on(redis, settings)
            await router.start()
            publisher = Publisher(redis, settings)
            tip = RedisBroker(redis, settings).tip
            crashed = Presence(redis, settings, tip=tip, ttl_ms=TTL_MS)  # connects, never refreshes nor disconnects
            await crashed.connected("acme", handoff_owed=True)
            expiry = await redis.zscore(rkeys.presence(settings, "acme"), crashed.instance)
            during = await publisher.entries(3)
            for entry in during:
                await router.route(entry)
            await asyncio.sleep(0.3)  # a window within the ttl: a webhook not held would arrive by now
            held = list(receiver.requests)
            window_ended_live = await _redis_ms(redis) < expiry
            # time passing: the crashed instance's presence ttl runs out (Redis's clock decides)
            await until(lambda: _past(redis, expiry))
            after = await publisher.entries(2)
            for entry in after:
                await router.route(entry)
            wanted = [e.cursor for e in during + after]
            await until(lambda: set(wanted) <= {r.json["cursor"] for r in receiver.requests})
            await router.close()
            await redis.aclose()
            return wanted, held, window_ended_live

        wanted, held, window_ended_live = asyncio.run(scenario())
    assert window_ended_live, "the window outlasted the ttl (a loaded machine): nothing was checked while held"
    assert held == []  # held while the presence entry is current
    assert [r.json["cursor"] for r in receiver.requests] == wanted


TTL_MS = 3000  # long enough that the held window (0.3 s) ends well within it on a loaded machine


async def _redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def _past(redis: aioredis.Redis, expiry: float) -> bool:
    return await _redis_ms(redis) > expiry


def test_a_refreshed_presence_stays_live_and_close_hands_over(redis_server: RedisServer, prefix: str) -> None:
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], int]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            router = router_on(redis, settings)
            await router.start()
            tip = RedisBroker(redis, settings).tip
            presence = Presence(redis, settings, tip=tip, ttl_ms=900, last_cursors=lambda: {"acme": None})
            presence.start()
            await presence.connected("acme", handoff_owed=True)
            await asyncio.sleep(2.0)  # past two ttls: only refreshing (every 300 ms) keeps it live
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


def test_only_websocket_webhook_clients_open_a_cover(redis_server: RedisServer, prefix: str) -> None:
    async def scenario() -> tuple[list[bool], list[bool]]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix)
        tip = RedisBroker(redis, settings).tip
        presence = Presence(redis, settings, tip=tip)
        live, after = [], []
        for client_id in ("sockets", "both"):
            await presence.connected(client_id, handoff_owed=client_id == "both")
            await presence.connected(client_id, handoff_owed=client_id == "both")
            await presence.disconnected(client_id, None)  # one socket left: still covered
            cover = f"{presence.instance}:from"
            live.append(bool(await redis.hexists(rkeys.presence_state(settings, client_id), cover)))
            await presence.disconnected(client_id, None)
            after.append(bool(await redis.hexists(rkeys.presence_state(settings, client_id), cover)))
        await redis.aclose()
        return live, after

    live, after = asyncio.run(scenario())
    assert live == [False, True]
    assert after == [False, False]


def test_a_crashed_instances_cover_ends_where_its_sockets_stopped_though_another_connected(
    redis_server: RedisServer, prefix: str
) -> None:
    """Instance A crashes with a socket that was sent nothing more; B connects before A expires. What
    came between reached no socket and must come by webhook; what B's socket was sent must not."""
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], list[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = replace(settings_for(redis_server.url, prefix), webhook_handoff_margin=0.1)
            await write_client(redis, settings, "acme", receiver.url, delivery="websocket+webhook")
            router = router_on(redis, settings)
            await router.start()
            publisher = Publisher(redis, settings)
            tip = RedisBroker(redis, settings).tip
            crashed = Presence(redis, settings, tip=tip, ttl_ms=600)  # never refreshes nor disconnects
            await crashed.connected("acme", handoff_owed=True)
            unseen = await publisher.entries(3)
            survivor = Presence(redis, settings, tip=tip, ttl_ms=60_000)
            await survivor.connected("acme", handoff_owed=True)
            seen = await publisher.entries(3)
            for entry in unseen + seen:
                await router.route(entry)
            await asyncio.sleep(0.8)  # the crashed instance has expired; its socket never got `unseen`
            await survivor.disconnected("acme", seen[-1].cursor)
            await until(lambda: len(receiver.requests) >= 3)
            await asyncio.sleep(0.3)  # a window: a webhook of what B's socket was sent would arrive by now
            await router.close()
            await redis.aclose()
            return [e.cursor for e in unseen], [r.json["cursor"] for r in receiver.requests]

        unseen, delivered = asyncio.run(scenario())
    assert delivered == unseen
