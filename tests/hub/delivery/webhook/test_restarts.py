"""Webhook delivery across hub restarts (SIGTERM, SIGKILL) and past stream retention, with real hub processes."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import cursor_key
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until

ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1"}


class Lms:
    """The LMS side: writes simulated events into the stream as the plug-in does."""

    def __init__(self, url: str, prefix: str, maxlen: int | None = None) -> None:
        self.redis = redis.Redis.from_url(url)
        self.writer = StreamWriter(self.redis, Settings(redis_url=url, redis_prefix=prefix), maxlen)
        self.lms = SimulatedLMS(seed=12)
        self.cursors: list[str] = []

    def publish(self, count: int) -> list[str]:
        cursors = self.writer.write_many([normalise(self.lms.next_event()) for _ in range(count)])
        self.cursors += cursors
        return cursors


def _wait(predicate, timeout: float = 30, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, f"{what} not reached")


def _delivered(receiver: Receiver) -> list[str]:
    return [r.json["cursor"] for r in receiver.requests if r.status == 200]


@pytest.mark.slow
def test_every_event_reaches_the_webhook_across_sigterm_and_sigkill(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env=ENV)
    hub.start()
    lms = Lms(redis_server.url, prefix)
    try:
        with Receiver() as receiver:
            until_delivering(hub, hub.client(delivery="webhook", webhook_url=receiver.url)[0])
            lms.publish(10)
            _wait(lambda: len(set(_delivered(receiver))) == 10, what="first 10")
            hub.stop(signal.SIGTERM)
            lms.publish(10)  # no hub running
            hub.start()
            lms.publish(10)
            _wait(lambda: len(set(_delivered(receiver))) == 30, what="30 after SIGTERM")
            hub.stop(signal.SIGKILL)
            lms.publish(10)  # no hub running
            hub.start()
            lms.publish(10)
            _wait(lambda: len(set(_delivered(receiver))) == 50, what="50 after SIGKILL")
            time.sleep(0.5)  # anything sent twice would have arrived by now
    finally:
        hub.stop()
    delivered = _delivered(receiver)
    assert list(dict.fromkeys(delivered)) == lms.cursors  # all 50, first deliveries in cursor order
    orders = [cursor_key(cursor) for cursor in delivered]
    assert orders == sorted(orders)  # a repeat (a SIGKILL between a 2xx and its ack) repeats in place
    assert len(delivered) - len(set(delivered)) <= 1
    assert all(r.headers["webhook-id"] == f"msg_{r.json['cursor']}" for r in receiver.requests)
    print(f"restart figure: {len(set(delivered))}/50 delivered, {len(delivered) - len(set(delivered))} duplicates")


def test_a_hub_down_past_stream_retention_dead_letters_one_counted_gap(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env=ENV)
    hub.start()
    lms = Lms(redis_server.url, prefix, maxlen=100)
    try:
        with Receiver() as receiver:
            client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
            admin = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
            api = httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {admin}"})
            until_delivering(hub, client_id)
            first = lms.publish(5)
            _wait(lambda: len(_delivered(receiver)) == 5, what="first 5")
            hub.stop(signal.SIGTERM)
            lms.publish(500)  # the stream keeps ~100: the routing position is long gone
            retained = [c.decode() for c, _ in lms.redis.xrange(rkeys.stream_key(hub.settings))]
            assert lms.cursors.index(retained[0]) > len(first)  # some events after the position are gone
            hub.start()
            _wait(lambda: len(_delivered(receiver)) == 5 + len(retained), what="the retained events")
            records = api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]
            health = api.get(f"/clients/{client_id}").json()["delivery_health"]
            replayed = api.post("/deadletters/replay", json={"client_id": client_id}).json()["replayed"]
    finally:
        hub.stop()
    assert _delivered(receiver) == first + retained
    assert [(r["reason"], r["cursor"]) for r in records] == [("gap", first[-1])]
    assert health["gaps"] == 1
    assert replayed == 0  # a gap names lost events; there is nothing to send again


@pytest.mark.slow
def test_two_routing_hubs_killed_in_turn_deliver_every_event_in_order(redis_server: RedisServer, prefix: str) -> None:
    first = HubProcess(redis_server.url, prefix, env=ENV)
    second = HubProcess(redis_server.url, prefix, env=ENV)
    first.start()
    second.start()
    lms = Lms(redis_server.url, prefix)
    try:
        with Receiver() as receiver:
            until_delivering(first, first.client(delivery="webhook", webhook_url=receiver.url)[0])
            lms.publish(20)  # both instances route every event; the outbox keeps each once
            _wait(lambda: len(set(_delivered(receiver))) == 20, what="20 with two hubs")
            first.stop(signal.SIGKILL)
            lms.publish(20)
            second.stop(signal.SIGKILL)
            lms.publish(20)  # no hub running
            second.start()
            lms.publish(20)
            _wait(lambda: len(set(_delivered(receiver))) == 80, what="80 after both were killed")
            time.sleep(0.5)  # a window: anything sent twice would have arrived by now
    finally:
        first.stop()
        second.stop()
    delivered = _delivered(receiver)
    assert list(dict.fromkeys(delivered)) == lms.cursors
    orders = [cursor_key(cursor) for cursor in delivered]
    assert orders == sorted(orders)
    assert len(delivered) - len(set(delivered)) <= 2  # at most one repeat per SIGKILL of the deliverer


def _routed(hub: Hub) -> float:
    """The stream entries one hub's webhook routing read."""
    return hub.metric("rthub_webhook_routed_total")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_one_of_two_hubs_routes_and_the_other_takes_over_when_it_stops(
    redis_server: RedisServer, prefix: str, sig: signal.Signals
) -> None:
    hubs = [HubProcess(redis_server.url, prefix, env=ENV), HubProcess(redis_server.url, prefix, env=ENV)]
    for hub in hubs:
        hub.start()
    lms = Lms(redis_server.url, prefix)
    try:
        with Receiver() as receiver:
            until_delivering(hubs[0], hubs[0].client(delivery="webhook", webhook_url=receiver.url)[0])
            lms.publish(30)
            _wait(lambda: len(set(_delivered(receiver))) == 30, what="30 with two hubs")
            routed = [_routed(hub) for hub in hubs]
            assert sorted(routed)[0] == 0, f"both hubs read the stream for webhooks: {routed}"
            leader = hubs[routed.index(max(routed))]
            other = hubs[1 - hubs.index(leader)]
            leader.stop(sig)
            lms.publish(30)
            # SIGTERM hands the lease back; after a SIGKILL it lapses first (10 s ttl).
            _wait(lambda: len(set(_delivered(receiver))) == 60, timeout=40, what="60 after the router stopped")
            assert _routed(other) >= 30
            time.sleep(0.5)  # a window: anything sent twice would have arrived by now
    finally:
        for hub in hubs:
            hub.stop()
    delivered = _delivered(receiver)
    assert list(dict.fromkeys(delivered)) == lms.cursors
    orders = [cursor_key(cursor) for cursor in delivered]
    assert orders == sorted(orders)
