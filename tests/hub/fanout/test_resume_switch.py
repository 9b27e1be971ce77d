"""The switch from a catch-up to live frames, under the interleaving a slow Redis reply produces.

A catch-up reads the stream until a read comes back empty, holding live frames meanwhile; held
frames beyond the send queue are dropped because the stream has them. A CI run lost 9 events when
the last read was answered by Redis just before they were appended, and they reached the socket
live, overflowed the held frames and were dropped, before that empty answer was taken. Here the
history answers its first empty read only after those events went through the fan-out.
"""

from __future__ import annotations

import asyncio

from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.fanout.dispatch import Fanout
from hub.ingest import BadEntry, Entry, cursor_key
from hub.ingest.memory import MemoryBroker
from hub.redis import client as redis_client
from hub.translate import TranslationSettings
from tests.hub.fanout.test_fast_path import RecordingWriter, _live_connection
from tests.servers import RedisServer
from tests.waiting import async_wait_until

QUEUE = 8


class LateAnswer:
    """A history whose first empty answer arrives after `arrive` appended and dispatched more events."""

    def __init__(self, broker: MemoryBroker, arrive) -> None:  # type: ignore[no-untyped-def]
        self.broker = broker
        self.arrive = arrive
        self.raced = False

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]:
        page = await self.broker.history(after, limit)
        if not page and not self.raced:
            self.raced = True
            await self.arrive()  # appended after Redis answered, offered live before the answer is read
        return page

    async def oldest(self) -> str | None:
        return await self.broker.oldest()


def test_live_frames_dropped_while_the_last_empty_read_was_answered_are_read_again(
    redis_server: RedisServer, prefix: str
) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, send_queue_size=QUEUE)
    lms = SimulatedLMS(seed=31)

    async def scenario() -> tuple[list[str], list[str], int]:
        client = redis_client(redis_server.url)
        broker = MemoryBroker()
        fanout = Fanout(Anonymiser(RedisIdStore(client, settings)), TranslationSettings("http://lms", "test"),
                        queue_size=QUEUE)
        start = await broker.publish(lms.next_event())
        published = [await broker.publish(lms.next_event()) for _ in range(20)]

        async def arrive() -> None:
            for _ in range(3 * QUEUE):
                cursor = await broker.publish(lms.next_event())
                published.append(cursor)
                await fanout.dispatch(Entry(cursor, (await broker.history(published[-2], 1))[0].event))

        writer = RecordingWriter()
        conn = _live_connection(writer, queue_size=QUEUE, end_of_tick=fanout.end_of_tick)
        fanout.add(conn)
        await fanout.resume(conn, LateAnswer(broker, arrive), start)
        await async_wait_until(lambda: not conn.pending, 10, "the queued frames were never written")
        await client.aclose()
        sent = [cursor for write in writer.writes for cursor in write if cursor is not None]
        return sent, published, conn.held_drops

    sent, published, drops = asyncio.run(scenario())
    assert drops > 0, "the held frames never overflowed: the interleaving under test did not happen"
    assert sent == published
    assert [cursor_key(c) for c in sent] == sorted(cursor_key(c) for c in sent)


def test_a_catch_up_is_under_way_before_it_reads_the_grant_changes(redis_server: RedisServer, prefix: str) -> None:
    """The endpoint starts no second catch-up for a `subscribe` frame that repeats the upgrade's cursor
    while the first one runs (`Connection.resuming`): so the connection must be resuming before the
    catch-up's first await, the read of the client's grant changes. When that read came first, a soak
    socket got two catch-ups at once and cursors out of order."""
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, send_queue_size=QUEUE)
    lms = SimulatedLMS(seed=32)

    async def scenario() -> tuple[bool, list[str], list[str]]:
        client = redis_client(redis_server.url)
        broker = MemoryBroker()
        fanout = Fanout(Anonymiser(RedisIdStore(client, settings)), TranslationSettings("http://lms", "test"),
                        queue_size=QUEUE)
        start = await broker.publish(lms.next_event())
        published = [await broker.publish(lms.next_event()) for _ in range(5)]
        reading, answered = asyncio.Event(), asyncio.Event()

        async def grant_changes() -> list:
            reading.set()
            await answered.wait()
            return []

        writer = RecordingWriter()
        conn = _live_connection(writer, queue_size=QUEUE, end_of_tick=fanout.end_of_tick)
        fanout.add(conn)
        catch_up = asyncio.create_task(fanout.resume(conn, broker, start, grant_changes))
        await asyncio.wait_for(reading.wait(), 10)
        resuming = conn.resuming  # what a `subscribe` frame handled now would see
        answered.set()
        await catch_up
        await async_wait_until(lambda: not conn.pending, 10, "the queued frames were never written")
        await client.aclose()
        sent = [cursor for write in writer.writes for cursor in write if cursor is not None]
        return resuming, sent, published

    resuming, sent, published = asyncio.run(scenario())
    assert resuming, "the grant changes were read before the connection was marked as resuming"
    assert sent == published
