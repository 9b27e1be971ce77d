"""The SDK against a real hub that is killed and restarted under load: every event once, in order."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from rthub_client import Stream

from tests.client.helpers import Consumer, Load, until
from tests.hubproc import HubProcess
from tests.servers import RedisServer

DISCONNECTS = 10


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_forced_disconnects_lose_nothing_and_yield_nothing_twice(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix)
    hub.start()
    client_id, secret = hub.client()
    persisted: list[str] = []
    outages: list[float] = []

    async def scenario(load: Load) -> tuple[list[str], Stream]:
        (start,) = load.send(1)
        assert start is not None
        stream = Stream(hub.http, client_id, secret, resume_from=start, on_cursor=persisted.append)
        consumer = Consumer(stream)
        load.start()
        for number in range(DISCONNECTS):
            seen = len(consumer.events)
            await until(lambda seen=seen: len(consumer.events) >= seen + 20, 30, f"events before kill {number + 1}")
            down = time.monotonic()
            await asyncio.to_thread(hub.stop, signal.SIGKILL if number % 2 == 0 else signal.SIGTERM)
            await asyncio.sleep(0.2)  # time passing: the LMS keeps publishing while no hub is up
            await asyncio.to_thread(hub.start)
            seen = len(consumer.events)
            await until(lambda seen=seen: len(consumer.events) > seen, 30, f"events after restart {number + 1}")
            outages.append(time.monotonic() - down)
        load.stop()
        await until(lambda: len(consumer.events) >= len(load.published) - 1, 30, "every published event")
        await asyncio.sleep(0.5)  # a window: a duplicate would arrive now
        await consumer.stop()
        return consumer.cursors, stream

    try:
        with Load(redis_server.url, prefix, seed=90) as load:
            yielded, stream = asyncio.run(scenario(load))
    finally:
        hub.stop()
    published = load.published[1:]
    assert None not in published
    lost = len(set(published) - set(yielded))
    duplicates = len(yielded) - len(set(yielded))
    print(
        f"\nSDK reconnect: {DISCONNECTS} forced disconnects (5 SIGKILL, 5 SIGTERM) while publishing; "
        f"published {len(published)}, yielded {len(yielded)}, lost {lost}, duplicates yielded {duplicates}, "
        f"duplicates dropped by the SDK {stream.stats.duplicates_dropped}, connections {stream.stats.connections}, "
        f"failed connects {stream.stats.failed_connects}, closes {dict(stream.stats.closes)}, "
        f"kill to first event after restart max {max(outages):.2f}s mean {sum(outages) / len(outages):.2f}s"
    )
    assert lost == 0 and duplicates == 0
    assert yielded == published, "every event once, in stream order"
    assert stream.stats.connections == DISCONNECTS + 1
    assert stream.stats.closes[1012] >= 1, "SIGTERM closes with 1012"
    assert persisted == yielded[: len(persisted)] and len(persisted) >= len(yielded) - 1


def test_a_stream_dropped_before_its_first_event_resumes_from_where_its_welcome_said_it_started(
    redis_server: RedisServer, prefix: str
) -> None:
    """A `Stream` without a cursor of its own, welcomed, then its hub killed before any event: what is
    published while it reconnects reaches it (the welcome named the cursor its live stream started at)."""
    hub = HubProcess(redis_server.url, prefix)
    hub.start()
    client_id, secret = hub.client()

    async def scenario(load: Load) -> list[str]:
        stream = Stream(hub.http, client_id, secret)
        consumer = Consumer(stream)
        await until(lambda: stream.stats.connections == 1, 20, "the first welcome")
        await asyncio.to_thread(hub.stop, signal.SIGKILL)
        await asyncio.to_thread(load.send, 3)  # while the stream has no hub to reconnect to
        await asyncio.to_thread(hub.start)
        await until(lambda: stream.stats.connections == 2, 20, "the stream reconnected")
        await asyncio.to_thread(load.send, 2)
        try:
            await until(lambda: len(consumer.events) >= 5, 20, "every event published since the welcome")
        finally:
            await consumer.stop()
        return consumer.cursors

    try:
        with Load(redis_server.url, prefix, seed=91) as load:
            yielded = asyncio.run(scenario(load))
    finally:
        hub.stop()
    assert yielded == load.published, "the 3 events published while it reconnected, then the 2 after, in order"
