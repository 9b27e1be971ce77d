"""Catch-ups share history reads and renders.

Against a real redis-server: `SharedHistory` answers exactly what the broker answers, from any
cursor, across runs that meet and past eviction, and concurrent readers of one page make one read.
Through a real hub: many sockets resuming together over one backlog each get exactly their events,
in order, while the hub translates each event once and reads each page of the stream about once.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from hub.config import Settings
from hub.dev.simulator import COURSES, SimulatedLMS
from hub.ingest import Entry
from hub.ingest.history import SharedHistory
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.wsclient import collect, connect


class CountingBroker:
    """The real broker, counting the history reads that reach Redis."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.reads = 0

    async def history(self, after: str, limit: int) -> list:
        self.reads += 1
        return await self.broker.history(after, limit)

    async def oldest(self) -> str | None:
        return await self.broker.oldest()


def publish(redis_server: RedisServer, prefix: str, count: int) -> tuple[list[str], Settings]:
    """`count` events in the stream; their cursors and the settings to read them with."""
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=3)
    cursors = [backend.send(lms.next_event()) for _ in range(count)]
    backend.close()
    assert all(cursors)
    return cursors, Settings.from_env(redis_url=redis_server.url, redis_prefix=prefix)


async def read_all(history: SharedHistory | CountingBroker, after: str, page: int) -> list[str]:
    cursors: list[str] = []
    while batch := await history.history(after, page):
        cursors += [entry.cursor for entry in batch]
        after = batch[-1].cursor
    return cursors


def test_shared_history_answers_as_the_broker_from_any_cursor(redis_server: RedisServer, prefix: str) -> None:
    cursors, settings = publish(redis_server, prefix, 300)

    async def scenario() -> None:
        broker = RedisBroker(redis_client(redis_server.url), settings)
        counting = CountingBroker(broker)
        shared = SharedHistory(counting, max_entries=120)
        rng = random.Random(5)
        starts = ["0-0", cursors[0], cursors[150], cursors[-1], *rng.sample(cursors, 25)]
        for after in starts:
            page = rng.choice([1, 7, 50, 500])
            expected = await read_all(broker, after, page)
            assert await read_all(shared, after, page) == expected, (after, page)
        assert sum(len(run.entries) for run in shared._runs) <= 120
        again = counting.reads
        await read_all(shared, cursors[-40], 10)  # the newest stretch was read last: it is cached
        assert counting.reads == again + 1  # only the read past the end, which finds nothing
        await broker.close()

    asyncio.run(scenario())


def test_concurrent_readers_of_one_page_make_one_read(redis_server: RedisServer, prefix: str) -> None:
    cursors, settings = publish(redis_server, prefix, 200)

    async def scenario() -> None:
        counting = CountingBroker(RedisBroker(redis_client(redis_server.url), settings))
        shared = SharedHistory(counting)
        results = await asyncio.gather(*(read_all(shared, cursors[9], 50) for _ in range(40)))
        assert all(result == cursors[10:] for result in results)
        # 4 pages of 50 and the empty read at the end, each read once however many readers asked
        assert counting.reads == 5
        assert shared.counts["history_joined"] + shared.counts["history_cached"] > 0
        await counting.broker.close()

    asyncio.run(scenario())


def test_a_cancelled_reader_does_not_fail_the_readers_waiting_for_it(redis_server: RedisServer, prefix: str) -> None:
    cursors, settings = publish(redis_server, prefix, 50)

    async def scenario() -> None:
        broker = RedisBroker(redis_client(redis_server.url), settings)
        shared = SharedHistory(broker)
        first = asyncio.create_task(shared.history(cursors[0], 100))
        await asyncio.sleep(0)  # the first read is under way
        second = asyncio.create_task(shared.history(cursors[0], 100))
        await asyncio.sleep(0)  # one loop turn: the second reader joins the first
        first.cancel()
        page = await second
        assert [entry.cursor for entry in page] == cursors[1:]
        assert all(isinstance(entry, Entry) for entry in page)
        await broker.close()

    asyncio.run(scenario())


@pytest.mark.timeout(180)
def test_many_sockets_resuming_together_share_reads_and_renders(redis_server: RedisServer, prefix: str) -> None:
    """60 sockets (three clients, one course each) resume over a backlog of 1,500 events at once."""
    hub = HubProcess(redis_server.url, prefix)
    hub.start()
    try:
        tokens = [hub.token(grant=[{"courses": [course]}]) for course in COURSES[:3]]
        lms = SimulatedLMS(seed=17)
        events = [lms.next_event() for _ in range(1500)]
        backend = RealtimeBackend(
            redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, timeout=SEND_TIMEOUT,
        )
        cursors = [backend.send(event) for event in events]
        backend.close()
        assert all(cursors)
        by_course = {course: [c for c, e in zip(cursors, events, strict=True) if e["context"]["course_id"] == course]
                     for course in COURSES[:3]}
        translated_before = hub.metric("rthub_events_translated_total")

        async def resume(index: int) -> list[str]:
            course = COURSES[index % 3]
            ws = await connect(hub.ws + f"?resume_from={cursors[0]}", tokens[index % 3])
            frames = await collect(ws, len(by_course[course]) - (1 if cursors[0] in by_course[course] else 0), 60)
            await ws.close()
            return [frame["cursor"] for frame in frames]

        async def scenario() -> list[list[str]]:
            return await asyncio.gather(*(resume(index) for index in range(60)))

        results = asyncio.run(scenario())
        for index, got in enumerate(results):
            expected = [c for c in by_course[COURSES[index % 3]] if c != cursors[0]]
            assert got == expected, index
        translated = hub.metric("rthub_events_translated_total") - translated_before
        entitled = sum(len(v) for v in by_course.values())
        # Each entitled event is translated once for the (xapi, other) group, not once per socket (20x).
        assert translated <= entitled
        reads = hub.metric("rthub_resume_history_reads_total")
        pages = -(-1500 // 500) + 1
        assert 1 <= reads <= 3 * pages, reads  # about one read per page, not one per socket (60x)
    finally:
        hub.stop()
