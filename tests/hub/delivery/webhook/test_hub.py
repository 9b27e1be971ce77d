"""Through real hub processes: websocket+webhook fallback around a socket, and two instances."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from hub.dev.simulator import SimulatedLMS
from rthub_lms import connect as rconnect
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.helpers import verify_by_hand
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.servers import RedisCluster, RedisServer
from tests.waiting import async_wait_until, wait_until
from tests.wsclient import collect, connect, quiet

HUB_ENV = {
    "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true",
    "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.5",
}


def register(process: HubProcess, url: str, delivery: str) -> tuple[str, str, str]:
    """A registry client with a webhook; returns (client id, client secret, webhook signing secret)."""
    client_id, secret = process.client(delivery=delivery, webhook_url=url)
    stored = rconnect.connect(rconnect.discover(process.redis_url))
    webhook_secret = stored.hget(rkeys.client_key(rkeys.Prefix(process.prefix), client_id), "webhook_secret").decode()
    stored.close()
    return client_id, secret, webhook_secret


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def wait_for_requests(receiver: Receiver, count: int, failure: str, within: float = 20) -> None:
    """Wait until `receiver` has had `count` requests; fail with `failure` after `within` seconds."""
    wait_until(lambda: len(receiver.requests) >= count, within, failure)


def test_socket_then_webhook_then_socket_loses_nothing(
    any_redis: RedisServer | RedisCluster, prefix: str, receiver: Receiver
) -> None:
    process = HubProcess(any_redis.url, prefix, env=HUB_ENV)
    process.start()
    client_id, client_secret, secret = register(process, receiver.url, "websocket+webhook")
    token = process.token_for(client_id, client_secret)
    backend = RealtimeBackend(redis_url=any_redis.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=11)
    stored = rconnect.connect(rconnect.discover(process.redis_url))

    def live_instances() -> int:
        """How many hub instances presence records as holding a live socket of the client."""
        return stored.zcard(rkeys.presence(rkeys.Prefix(prefix), client_id))

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        ws = await connect(process.ws, token)
        first = [backend.send(lms.next_event()) for _ in range(5)]
        on_socket = [f["cursor"] for f in await collect(ws, 5)]
        await asyncio.sleep(0.5)  # a window: a webhook sent while the socket is live would arrive by now
        webhooks_while_connected = list(receiver.requests)
        await ws.close()
        await async_wait_until(lambda: live_instances() == 0, 10, "the closed socket stayed in presence")
        second = [backend.send(lms.next_event()) for _ in range(5)]
        await async_wait_until(lambda: set(second) <= {r.json["cursor"] for r in receiver.requests}, 10,
                               "webhooks did not take over")
        ws = await connect(process.ws, token, {"type": "subscribe", "resume_from": on_socket[-1]})
        resumed = [f["cursor"] for f in await collect(ws, 5)]
        await async_wait_until(lambda: live_instances() == 1, 10, "the resumed socket never reached presence")
        seen = len(receiver.requests)
        third = [backend.send(lms.next_event()) for _ in range(5)]
        live = [f["cursor"] for f in await collect(ws, 5)]
        await asyncio.sleep(0.5)  # a window: a webhook of `third` (held by the live socket) would arrive by now
        late = [r.json["cursor"] for r in receiver.requests[seen:]]
        assert await quiet(ws, 0.2) == []
        await ws.close()
        assert webhooks_while_connected == []
        assert on_socket == first and resumed == second and live == third
        return first + second + third, on_socket + resumed + live, late, third

    try:
        everything, by_socket, late, third = asyncio.run(scenario())
    finally:
        stored.close()
        process.stop()
    by_webhook = [r.json["cursor"] for r in receiver.requests]
    assert set(everything) == set(by_socket) | set(by_webhook)
    assert not set(late) & set(third)
    assert all(verify_by_hand(secret, r) for r in receiver.requests)


def test_two_hub_instances_deliver_each_webhook_event_once(
    any_redis: RedisServer | RedisCluster, prefix: str, receiver: Receiver
) -> None:
    processes = [HubProcess(any_redis.url, prefix, env=HUB_ENV) for _ in range(2)]
    for process in processes:
        process.start()
    register(processes[0], receiver.url, "webhook")
    try:
        backend = RealtimeBackend(redis_url=any_redis.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
        lms = SimulatedLMS(seed=12)
        cursors = [backend.send(lms.next_event()) for _ in range(30)]

        wait_for_requests(receiver, 30, "not all events were delivered", within=15)
        time.sleep(1.0)  # a window: an event delivered by both instances would arrive twice by now
    finally:
        for process in processes:
            process.stop()
    assert [r.json["cursor"] for r in receiver.requests] == cursors
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 30


def test_an_event_published_once_the_hub_is_up_reaches_a_webhook_even_when_routing_starts_later(
    redis_server: RedisServer, prefix: str, receiver: Receiver
) -> None:
    """On a deployment's very first start, routing begins at the stream's newest entry. That point is
    fixed before the hub serves: events published after the hub is up are routed even though the
    routing lease is held elsewhere at first (an instance that went away), so this hub starts
    reading only when the lease expires. Fixing it when reading starts would skip them."""
    process = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    register(process, receiver.url, "webhook")
    stored = rconnect.connect(rconnect.discover(redis_server.url))
    stored.set(rkeys.routing_lease(rkeys.Prefix(prefix)), "an instance that went away", px=5000)
    process.start()
    try:
        backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
        lms = SimulatedLMS(seed=21)
        cursors = [backend.send(lms.next_event()) for _ in range(5)]
        backend.close()
        assert stored.exists(rkeys.routing_lease(rkeys.Prefix(prefix))), "sent while the lease was held elsewhere"
        wait_for_requests(receiver, len(cursors), "events published after start were not routed")
    finally:
        process.stop()
        stored.close()
    assert [r.json["cursor"] for r in receiver.requests] == cursors


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_routing_start_a_hub_saved_outlives_it(
    redis_server: RedisServer, prefix: str, receiver: Receiver, sig: int
) -> None:
    """A hub that started (and so saved where routing begins) but was stopped before it routed
    anything: events published while no hub runs reach the webhook once the next hub starts, rather
    than counting as history older than that hub's start."""
    lease = rkeys.routing_lease(rkeys.Prefix(prefix))
    first = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    register(first, receiver.url, "webhook")
    stored = rconnect.connect(rconnect.discover(redis_server.url))
    stored.set(lease, "an instance that went away", px=60_000)  # the first hub never routes
    first.start()
    first.stop(sig)
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=22)
    cursors = [backend.send(lms.next_event()) for _ in range(5)]
    backend.close()
    stored.delete(lease)
    second = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    second.start()
    try:
        wait_for_requests(receiver, len(cursors), "events published between the hubs were skipped")
    finally:
        second.stop()
        stored.close()
    assert [r.json["cursor"] for r in receiver.requests] == cursors
