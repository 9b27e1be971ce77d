"""`Stream` features against a real hub: a cursor persisted by one run resumes the next, filters,
a refused filter, and a cursor older than retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from rthub_client import Event, Gap, ProtocolError, Stream

from rthub_lms import keys as rkeys
from tests.client.helpers import Consumer, Load, until
from tests.hubproc import Hub
from tests.servers import RedisServer


def test_a_persisted_cursor_resumes_the_next_run_at_least_once(
    hub: Hub, redis_server: RedisServer, prefix: str
) -> None:
    client_id, secret = hub.client()
    saved: dict[str, str] = {}

    async def save(cursor: str) -> None:
        saved["cursor"] = cursor

    async def run(stop_after: int) -> list[str]:
        stream = Stream(hub.http, client_id, secret, resume_from=saved["cursor"], on_cursor=save)
        cursors: list[str] = []
        async for event in stream:
            cursors.append(event.cursor)
            if len(cursors) == stop_after:
                break  # the consumer stops (or crashes) while handling this event
        await stream.aclose()
        return cursors

    with Load(redis_server.url, prefix, seed=96) as load:
        (saved["cursor"],) = load.send(1)
        published = load.send(10)
        first = asyncio.run(run(stop_after=4))
        published += load.send(5)  # while no consumer runs
        second = asyncio.run(run(stop_after=12))
    assert first == published[:4]
    assert second == published[3:15], "the event the first run stopped on comes again, then the rest"
    assert saved["cursor"] == published[13]


def test_filter_narrows_the_stream_and_a_bad_filter_raises(
    hub: Hub, redis_server: RedisServer, prefix: str
) -> None:
    client_id, secret = hub.client()
    wanted = {"problem_check"}

    async def scenario(load: Load) -> tuple[list[str], list[str]]:
        consumer = Consumer(Stream(hub.http, client_id, secret, filter=[{"event_types": sorted(wanted)}]))
        await until(lambda: consumer.stream.stats.connections == 1, 10, "connected")
        await asyncio.sleep(0.2)  # the subscribe frame is in: it has no acknowledgement to wait for
        sent = load.send(60)
        expected = [cursor for cursor, name in zip(sent, load.names, strict=True) if name in wanted]
        await until(lambda: len(consumer.events) >= len(expected), 10, "every matching event")
        await asyncio.sleep(0.3)  # a window: an event the filter should drop would arrive by now
        await consumer.stop()
        bad = Stream(hub.http, client_id, secret, filter={"colours": ["red"]})
        with pytest.raises(ProtocolError, match="1008"):
            await asyncio.wait_for(anext(bad), 10)
        return consumer.cursors, expected

    with Load(redis_server.url, prefix, seed=97) as load:
        received, expected = asyncio.run(scenario(load))
    assert expected and received == expected
    assert set(load.names) > wanted, "other events were published and left out"


class SlowToSubscribe(Stream):
    """A `Stream` on a loaded machine: its `subscribe` frame leaves a second after the upgrade."""

    async def _greet(self, ws: Any) -> None:
        await asyncio.sleep(1.0)
        await super()._greet(ws)


def test_a_filtered_resume_is_narrowed_from_its_first_frame(hub: Hub, redis_server: RedisServer, prefix: str) -> None:
    """A `Stream` with a filter and a cursor: the catch-up starts on the upgrade request, before the
    `subscribe` frame arrives, so the filter must come with it (it did not: a catch-up went by the grant
    alone until the frame came)."""
    client_id, secret = hub.client()
    wanted = {"problem_check"}

    async def scenario(load: Load) -> tuple[list[str], list[str]]:
        start, *sent = load.send(101)
        expected = [cursor for cursor, name in zip(sent, load.names[1:], strict=True) if name in wanted]
        consumer = Consumer(SlowToSubscribe(hub.http, client_id, secret, filter={"event_types": sorted(wanted)},
                                            resume_from=start))
        await until(lambda: len(consumer.events) >= len(expected), 20, "every matching event")
        await asyncio.sleep(0.3)  # a window: an event the filter should drop would arrive by now
        await consumer.stop()
        return consumer.cursors, expected

    with Load(redis_server.url, prefix, seed=98) as load:
        received, expected = asyncio.run(scenario(load))
    assert expected and len(expected) < 100, "the backlog holds other events too"
    assert received == expected, f"{len(set(received) - set(expected))} frames outside the filter"


def test_a_cursor_older_than_retention_reports_a_gap_then_streams_what_is_left(
    hub: Hub, redis_server: RedisServer, prefix: str
) -> None:
    client_id, secret = hub.client()
    gaps: list[Gap] = []

    async def scenario(load: Load) -> list[str]:
        stream = Stream(hub.http, client_id, secret, resume_from=old, on_gap=gaps.append)
        cursors = [event.cursor async for event in _take(stream, 5)]
        await stream.aclose()
        return cursors

    with Load(redis_server.url, prefix, seed=98) as load:
        old, *_ = load.send(6)
        kept = load.send(5)
        redis.Redis.from_url(redis_server.url).xtrim(events_key(prefix), maxlen=5, approximate=False)
        received = asyncio.run(scenario(load))
    assert received == kept
    assert gaps == [Gap(since=old, oldest=kept[0])]


async def _take(stream: Stream, count: int) -> AsyncIterator[Event]:
    async for event in stream:
        yield event
        count -= 1
        if count == 0:
            return


def events_key(prefix: str) -> str:
    """The event stream's key under a test prefix."""
    return rkeys.stream_key(rkeys.Prefix(prefix))
