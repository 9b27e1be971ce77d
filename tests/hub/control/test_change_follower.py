"""The one registry-change follower: every registration hears each notice, and resyncs after every
(re)subscribe, since notices sent while the subscription was down are lost; `close` ends it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hub.config import Settings
from hub.control.changes import ChangeFollower, OnChange, OnResync
from hub.redis import client as redis_client
from rthub_lms.keys import changes_channel
from tests.servers import RedisServer
from tests.waiting import async_wait_until


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    await async_wait_until(condition, timeout)


def test_notices_reach_every_registration_and_a_lost_subscription_resyncs(own_redis: RedisServer, prefix: str) -> None:
    settings = Settings(redis_url=own_redis.url, redis_prefix=prefix)
    heard: list[tuple[str, str]] = []

    def registration(name: str) -> tuple[OnChange, OnResync]:
        async def on_change(client_id: str) -> None:
            heard.append((name, client_id))

        async def resync() -> None:
            heard.append((name, "resync"))

        return on_change, resync

    async def scenario() -> None:
        redis = redis_client(own_redis.url)
        follower = ChangeFollower(redis, settings)
        follower.register(*registration("sockets"))
        follower.register(*registration("webhooks"), resync_every=0.5)
        follower.start()
        try:
            await _until(lambda: ("webhooks", "resync") in heard)
            assert heard == [("sockets", "resync"), ("webhooks", "resync")]
            heard.clear()
            await redis.publish(changes_channel(settings), "client-1")
            await _until(lambda: ("webhooks", "client-1") in heard)
            assert heard[:2] == [("sockets", "client-1"), ("webhooks", "client-1")]
            await _until(lambda: ("webhooks", "resync") in heard)  # the periodic one, for webhooks only
            assert ("sockets", "resync") not in heard
            heard.clear()
            await redis.client_kill_filter(_type="pubsub")  # the subscription is lost: both resync
            await _until(lambda: ("sockets", "resync") in heard)
            await redis.publish(changes_channel(settings), "client-2")
            await _until(lambda: ("webhooks", "client-2") in heard)
        finally:
            started = time.monotonic()
            await follower.close()
            assert time.monotonic() - started < 2.0
            await redis.aclose()

    asyncio.run(scenario())


def test_a_failing_callback_is_counted_reloads_and_holds_up_no_one(own_redis: RedisServer, prefix: str) -> None:
    settings = Settings(redis_url=own_redis.url, redis_prefix=prefix)
    heard: list[tuple[str, str]] = []

    async def broken_on_change(client_id: str) -> None:
        if client_id == "corrupt":
            raise ValueError("a client record the loader cannot read")
        heard.append(("webhooks", client_id))

    async def broken_resync() -> None:
        heard.append(("webhooks", "resync"))

    async def on_change(client_id: str) -> None:
        heard.append(("sockets", client_id))

    async def resync() -> None:
        heard.append(("sockets", "resync"))

    async def scenario() -> None:
        redis = redis_client(own_redis.url)
        follower = ChangeFollower(redis, settings)
        follower.register(broken_on_change, broken_resync)
        follower.register(on_change, resync)
        follower.start()
        try:
            await _until(lambda: ("sockets", "resync") in heard)
            heard.clear()
            await redis.publish(changes_channel(settings), "corrupt")
            await _until(lambda: ("webhooks", "resync") in heard)  # the failed one reloads everything
            assert ("sockets", "corrupt") in heard  # the other registration still heard it
            assert follower.failures == 1
            await redis.publish(changes_channel(settings), "client-3")
            await _until(lambda: ("webhooks", "client-3") in heard and ("sockets", "client-3") in heard)
        finally:
            await follower.close()
            await redis.aclose()

    asyncio.run(scenario())
