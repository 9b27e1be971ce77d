"""Scale-out: two hub instances on one Redis and prefix behave as one system.

Like instances behind one proxy, both share the signing key and the issuer URL, so a token from
either is good on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import HubProcess
from tests.servers import RedisCluster, RedisServer
from tests.wsclient import collect, connect, quiet


@pytest.fixture
def two_hubs(any_redis: RedisServer | RedisCluster, prefix: str) -> Iterator[tuple[HubProcess, HubProcess]]:
    first = HubProcess(any_redis.url, prefix)  # both keep their keys in the default data directory
    hubs = (first, HubProcess(any_redis.url, prefix, env={"RTHUB_ISSUER": first.env["RTHUB_ISSUER"]}))
    try:
        for hub in hubs:
            hub.start()
        yield hubs
    finally:
        for hub in hubs:
            hub.stop()


def _actor(frame: dict[str, Any]) -> Any:
    data = frame["data"]
    return (data[0] if isinstance(data, list) else data)["actor"]


def test_a_subscriber_on_each_instance_gets_every_event(two_hubs: tuple[HubProcess, HubProcess]) -> None:
    first_hub, second_hub = two_hubs
    backend = RealtimeBackend(redis_url=first_hub.redis_url, redis_prefix=first_hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=21)
    token = first_hub.token()

    async def scenario() -> tuple[list[str], list[dict], list[dict]]:
        first, second = await connect(first_hub.ws, token), await connect(second_hub.ws, token)
        cursors = [backend.send(lms.next_event()) for _ in range(40)]
        one, two = await asyncio.gather(collect(first, 40), collect(second, 40))
        extra = await quiet(first, 0.3) + await quiet(second, 0.3)
        await first.close()
        await second.close()
        assert extra == []
        return cursors, one, two

    cursors, one, two = asyncio.run(scenario())
    assert None not in cursors
    assert [f["cursor"] for f in one] == cursors
    assert [f["cursor"] for f in two] == cursors
    # Anonymised ids live in Redis, so both instances name the same learner the same way.
    assert [_actor(f) for f in one] == [_actor(f) for f in two]


def test_resume_on_the_other_instance_replays_what_was_missed(two_hubs: tuple[HubProcess, HubProcess]) -> None:
    first_hub, second_hub = two_hubs
    backend = RealtimeBackend(redis_url=first_hub.redis_url, redis_prefix=first_hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=22)
    token = first_hub.token()

    async def scenario() -> tuple[list[str], list[str], list[dict], list[dict]]:
        ws = await connect(first_hub.ws, token)
        seen = [backend.send(lms.next_event()) for _ in range(5)]
        before = await collect(ws, 5)
        await ws.close()
        missed = [backend.send(lms.next_event()) for _ in range(15)]
        ws = await connect(second_hub.ws, token, {"type": "subscribe", "resume_from": before[-1]["cursor"]})
        replayed = await collect(ws, 15)
        live = backend.send(lms.next_event())
        after = await collect(ws, 1) + await quiet(ws, 0.3)
        await ws.close()
        return seen, [*missed, live], before, replayed + after

    seen, expected, before, resumed = asyncio.run(scenario())
    assert [f["cursor"] for f in before] == seen
    assert [f["cursor"] for f in resumed] == expected
    assert {f["type"] for f in resumed} == {"event"}
