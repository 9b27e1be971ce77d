"""Privacy through real hubs: stable anonymous actors, and no learner identity in anything delivered."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis

from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until
from tests.wsclient import collect, connect

SECRETS = {
    "username": "zelda.q.private",
    "email": "zelda.private@example.net",
    "name": "Zelda Quintessa Private",
    "ip": "198.51.100.77",
    "agent": "PrivateBrowser/9.9 (zelda-device)",
    "referer": "https://lms.example.org/courses/zelda-secret-page",
    "session": "5e55e55e55e55e55e55e55e55e55e55e",
}


def _actor(frame: dict) -> str:
    data = frame["data"][0] if isinstance(frame["data"], list) else frame["data"]
    return data["actor"]["account"]["name"] if "account" in data["actor"] else data["actor"]["id"]


def _events(count: int, user_id: int, seed: int) -> list[dict]:
    lms = SimulatedLMS(seed=seed)
    events = []
    for _ in range(count):
        event = lms.next_event()
        event["context"].update(user_id=user_id, username=SECRETS["username"], ip=SECRETS["ip"],
                                agent=SECRETS["agent"], referer=SECRETS["referer"], session=SECRETS["session"])
        if isinstance(event["data"], dict):
            if "user_id" in event["data"]:
                event["data"]["user_id"] = user_id
            event["data"].setdefault("email", SECRETS["email"])
            event["data"].setdefault("name", SECRETS["name"])
        events.append(event)
    return events


def test_anonymised_ids_are_stable_across_instances_and_restarts_and_differ_across_types(
    redis_server: RedisServer, prefix: str
) -> None:
    first, second = HubProcess(redis_server.url, prefix), HubProcess(redis_server.url, prefix)
    first.start()
    second.start()
    adaptive_a, adaptive_b = first.token(type="adaptive"), second.token(type="adaptive")
    enterprise = first.token(type="enterprise")
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, timeout=SEND_TIMEOUT)

    async def actors(pairs: list[tuple[HubProcess, str]], events: list[dict]) -> list[set[str]]:
        sockets = [await connect(hub.ws, token) for hub, token in pairs]  # in the fan-out once welcomed
        for event in events:
            backend.send(event)
        seen = [{_actor(frame) for frame in await collect(ws, len(events))} for ws in sockets]
        for ws in sockets:
            await ws.close()
        return seen

    try:
        on_a, on_b, other_type = asyncio.run(
            actors([(first, adaptive_a), (second, adaptive_b), (first, enterprise)], _events(6, 777, seed=61))
        )
        first.stop()
        first.start()
        (after_restart,) = asyncio.run(actors([(first, first.token(type="adaptive"))], _events(3, 777, seed=62)))
    finally:
        first.stop()
        second.stop()
    assert len(on_a) == 1 and on_a == on_b == after_restart
    assert len(other_type) == 1 and other_type != on_a
    assert "777" not in next(iter(on_a))


@pytest.mark.parametrize("translator", ["xapi", "caliper"])
def test_no_learner_identity_in_frames_or_webhook_bodies(
    redis_server: RedisServer, prefix: str, translator: str
) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"})
    hub.start()
    try:
        with Receiver() as receiver:
            hub.client(translator=translator, delivery="webhook", webhook_url=receiver.url)
            token = hub.token(translator=translator)
            backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
            events = _events(40, 4242, seed=63)

            async def frames() -> list[dict]:
                ws = await connect(hub.ws, token)  # in the fan-out once welcomed: live events are held for it
                cursors = [backend.send(event) for event in events]
                assert all(cursors), backend.counts
                received = await collect(ws, len(events))
                await ws.close()
                return received

            delivered = asyncio.run(frames())
            wait_until(lambda: len(receiver.requests) >= len(events), 15, "webhooks did not all arrive")
            bodies = b"".join(request.body for request in receiver.requests)
    finally:
        hub.stop()
    text = orjson.dumps(delivered).decode() + bodies.decode()
    for field, secret in SECRETS.items():
        assert secret not in text, f"{field} leaked"
    stored = redis.Redis.from_url(redis_server.url)
    assert stored.xlen(rkeys.stream_key(rkeys.Prefix(prefix))) == len(events)
