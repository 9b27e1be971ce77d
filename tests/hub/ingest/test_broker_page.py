"""`Broker.page`, `tip` and `wait_after` mean the same on every engine: the Redis stream (a real
redis-server, and a three-master Cluster), trimmed exactly as retention would, and the in-memory
history the webhook router's tests run on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import BadEntry, Broker, Entry, Page, predecessor
from hub.ingest.memory import MemoryBroker
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from rthub_lms.connect import discover
from rthub_lms.events import normalise
from rthub_lms.keys import stream_key

KEPT = 4


@dataclass
class Engine:
    broker: Broker
    trim: Callable[[], Awaitable[object]]  # down to `KEPT` entries, as retention does
    write: Callable[[bytes], Awaitable[str]]  # what a buggy producer might store; returns its cursor


@pytest.fixture(params=["memory", "single", "cluster"])
def engine(request: pytest.FixtureRequest, prefix: str) -> Callable[[], Engine]:
    """Makes an engine inside the test's event loop."""
    if request.param == "memory":

        def memory() -> Engine:
            broker = MemoryBroker(maxlen=KEPT)

            async def trimmed() -> None:  # it trims as it appends
                return None

            return Engine(broker, trimmed, broker.append)

        return memory
    server = request.getfixturevalue("redis_server" if request.param == "single" else "redis_cluster")
    settings = Settings(redis_url=server.url, redis_prefix=prefix)
    stream = stream_key(settings)

    def redis() -> Engine:
        client = redis_client(server.url)

        async def trim() -> None:  # the publish script trims approximately: retention may cut anywhere
            await client.xtrim(stream, maxlen=KEPT, approximate=False)

        async def write(payload: bytes) -> str:
            return (await client.xadd(stream, {"e": payload})).decode()

        return Engine(RedisBroker(client, settings, sharded=discover(server.url).sharded), trim, write)

    return redis


def run(scenario: Callable[[Engine], Awaitable[None]], engine: Callable[[], Engine]) -> None:
    async def main() -> None:
        made = engine()
        try:
            await asyncio.wait_for(scenario(made), 20)
        finally:
            await made.broker.close()

    asyncio.run(main())


def cursors(page: Page) -> list[str | None]:
    return [entry.cursor for entry in page.entries]


def test_pages_report_what_retention_dropped_after_the_cursor(engine: Callable[[], Engine]) -> None:
    async def scenario(engine: Engine) -> None:
        broker = engine.broker
        assert await broker.tip() is None
        assert await broker.page("0-0", 10) == Page([], None)  # no history at all: nothing read, nothing lost
        lms = SimulatedLMS(seed=5)
        published = [await broker.publish(normalise(lms.next_event())) for _ in range(6)]
        await engine.trim()
        retained = published[-KEPT:]

        after_first = await broker.page(published[0], 10)
        assert after_first.lost == predecessor(retained[0]) and cursors(after_first) == retained
        assert all(isinstance(entry, Entry) for entry in after_first.entries)
        assert await broker.page("0-0", 10) == Page(after_first.entries, None)  # from the start: none lost
        assert await broker.page(retained[0], 2) == Page(after_first.entries[1:3], None)
        assert await broker.page(retained[-1], 10) == Page([], None)
        assert await broker.tip() == retained[-1]

    run(scenario, engine)


def test_a_bad_entry_is_paged_with_its_cursor(engine: Callable[[], Engine]) -> None:
    async def scenario(engine: Engine) -> None:
        first = await engine.broker.publish(normalise(SimulatedLMS(seed=5).next_event()))
        bad = await engine.write(b"not json")
        [entry] = (await engine.broker.page(first, 10)).entries
        assert isinstance(entry, BadEntry) and entry.cursor == bad and entry.reason == "invalid_json"

    run(scenario, engine)


def test_wait_after_returns_when_an_entry_follows_or_at_the_timeout(engine: Callable[[], Engine]) -> None:
    async def scenario(engine: Engine) -> None:
        broker, lms = engine.broker, SimulatedLMS(seed=5)
        before = await broker.publish(normalise(lms.next_event()))
        last = await broker.publish(normalise(lms.next_event()))
        started = time.monotonic()
        await broker.wait_after(before, 5)
        assert time.monotonic() - started < 1  # an entry follows already
        await broker.wait_after(last, 0.2)
        assert time.monotonic() - started >= 0.15  # nothing follows: until the timeout
        waiting = asyncio.create_task(broker.wait_after(last, 5))
        # time for the waiter to block: not observable alike on every engine (memory, Redis, cluster);
        # were it not blocked yet, the assertions below would still hold
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await broker.publish(normalise(lms.next_event()))
        await waiting
        assert time.monotonic() - started < 1  # woken by the new entry

    run(scenario, engine)
