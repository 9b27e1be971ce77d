"""The admin API's facts about one client's delivery, against real hubs and real receivers: refusals before
any POST in the delivery log, the queue and the batch being retried, "retry now" across hub instances,
a replay that says what waits for a disabled endpoint (or enables it), and disabling an endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.helpers import until_delivering, write_client
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import Hub, HubProcess, InProcessHub
from tests.servers import RedisServer
from tests.waiting import wait_until


def _wait(predicate, timeout: float = 20, message: str = "condition not reached") -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, message)


def _admin(hub: Hub) -> httpx.Client:
    token = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
    return httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _publisher(hub: Hub) -> RealtimeBackend:
    return RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)


def _hub(redis_server: RedisServer, prefix: str, allow_private: bool) -> Iterator[InProcessHub]:
    env = {"RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.05,0.05", "RTHUB_WEBHOOK_ALLOW_PRIVATE": str(allow_private).lower()}
    started = InProcessHub(redis_server.url, prefix, env=env)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def hub(redis_server: RedisServer, prefix: str) -> Iterator[InProcessHub]:
    """A hub retrying twice at once, delivering to the test's loopback receivers."""
    yield from _hub(redis_server, prefix, allow_private=True)


@pytest.fixture
def guarded_hub(redis_server: RedisServer, prefix: str) -> Iterator[InProcessHub]:
    """A hub retrying twice at once, whose address guard refuses private addresses."""
    yield from _hub(redis_server, prefix, allow_private=False)


def test_a_refusal_before_any_post_is_in_the_delivery_log(guarded_hub: InProcessHub) -> None:
    """The address guard refuses a loopback URL at every attempt: each refusal is a row of the log, so
    the log and the failure count agree."""

    async def register() -> None:
        redis = aioredis.Redis.from_url(guarded_hub.redis_url)
        try:  # written by hand: the registry refuses a loopback URL while private addresses are refused
            await write_client(redis, guarded_hub.settings, "guarded", "http://127.0.0.1:9/in")
        finally:
            await redis.aclose()

    asyncio.run(register())
    api = _admin(guarded_hub)
    _publisher(guarded_hub).send(SimulatedLMS(seed=71).next_event())
    _wait(lambda: api.get("/deadletters", params={"client_id": "guarded"}).json()["deadletters"])
    log = api.get("/clients/guarded/deliveries").json()["deliveries"]
    health = api.get("/clients/guarded").json()["delivery_health"]
    dead = api.get("/deadletters", params={"client_id": "guarded"}).json()["deadletters"]

    assert health["failed_attempts"] == 3 == len(log), (health, log)
    assert all(row["sent"] is False and row["status"] is None and row["latency_ms"] == 0 for row in log)
    assert all(row["error"].startswith("refused URL: ") and "127.0.0.1" in row["error"] for row in log)
    assert dead[0]["reason"].startswith("refused URL: ") and dead[0]["attempts"] == 3


def test_replay_says_what_waits_for_a_disabled_endpoint_and_enable_delivers_it(hub: InProcessHub) -> None:
    gone = {"value": True}
    with Receiver(lambda n: Reply(410) if gone["value"] else Reply(200)) as receiver:
        client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
        until_delivering(hub, client_id)
        api = _admin(hub)
        lms, backend = SimulatedLMS(seed=72), _publisher(hub)
        cursors = [backend.send(lms.next_event()) for _ in range(3)]

        def dead() -> list[dict]:
            return api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]

        _wait(lambda: len(dead()) == 3)
        first = dead()[0]["id"]
        queued_only = api.post("/deadletters/replay", json={"ids": [first]}).json()
        detail = api.get(f"/clients/{client_id}").json()
        refused = api.post("/deadletters/replay", json={"client_id": client_id, "enable": "yes"})
        gone["value"] = False
        enabled = api.post("/deadletters/replay", json={"client_id": client_id, "enable": True}).json()
        _wait(lambda: [r.json["cursor"] for r in receiver.requests if r.status == 200] == cursors)
        after = api.get(f"/clients/{client_id}").json()

        disabled = api.post(f"/clients/{client_id}/webhooks/disable").json()

    assert queued_only == {"replayed": 1, "waiting": 1, "enabled": []}
    assert detail["queue"]["queued"] == 1 and detail["deadletters"] == 2 and detail["delivery_status"] == "disabled"
    assert detail["queue"]["oldest_queued_at"] == pytest.approx(int(cursors[0].split("-")[0]) / 1000)
    assert refused.status_code == 422 and refused.json()["field"] == "enable"
    assert enabled == {"replayed": 2, "waiting": 0, "enabled": [client_id]}
    assert after["delivery_status"] == "ok" and after["deadletters"] == 0 and after["queue"]["queued"] == 0
    assert after["retry"] is None
    assert disabled["delivery_status"] == "disabled" and "disabled by an admin" in disabled["delivery_status_reason"]


@pytest.mark.slow
def test_retry_now_on_one_hub_brings_forward_the_retry_another_hub_waits_for(
    redis_server: RedisServer, prefix: str
) -> None:
    """The hub that delivers waits ten minutes for its next attempt; "retry now" asked of another hub
    reaches it through Redis and the attempt happens at once."""
    env = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "600"}
    delivering = HubProcess(redis_server.url, prefix, env=env)
    delivering.start()
    failing = {"value": True}
    other: InProcessHub | None = None
    try:
        with Receiver(lambda n: Reply(503, {}, b"busy") if failing["value"] else Reply(200)) as receiver:
            client_id, _ = delivering.client(delivery="webhook", webhook_url=receiver.url)
            until_delivering(delivering, client_id)  # the subprocess holds the client's lease from now on
            cursor = _publisher(delivering).send(SimulatedLMS(seed=73).next_event())
            other = InProcessHub(redis_server.url, prefix, env=env)
            other.start()
            api = _admin(other)
            _wait(lambda: api.get(f"/clients/{client_id}").json()["retry"] is not None)
            waiting = api.get(f"/clients/{client_id}").json()
            failing["value"] = False
            asked = time.monotonic()
            retried = api.post(f"/clients/{client_id}/retry-now").json()
            _wait(lambda: receiver.requests[-1].status == 200, 15, "the retry did not happen")
            took = time.monotonic() - asked
            _wait(lambda: api.get(f"/clients/{client_id}").json()["retry"] is None)
            again = api.post(f"/clients/{client_id}/retry-now").json()
    finally:
        if other is not None:
            other.stop()
        delivering.stop()
    assert waiting["retry"]["attempts"] == 1 and waiting["retry"]["last_error"] == "HTTP 503: busy"
    assert waiting["retry"]["next_attempt_at"] > time.time() + 400 and waiting["queue"]["queued"] == 1
    assert retried == {"retrying": True} and took < 10
    assert again == {"retrying": False}
    assert [r.json["cursor"] for r in receiver.requests] == [cursor, cursor]
