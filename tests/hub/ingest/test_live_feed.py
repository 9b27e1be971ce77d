"""The broker's live feed (`RedisBroker.live`) across a lost subscription, against a real redis-server.

Pub/sub drops what is published while the feed resubscribes; the feed reads it back from the stream,
from the last cursor it saw, or, before its first event, from where the stream stood when it started.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import Entry
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from rthub_lms.events import normalise
from rthub_lms.keys import live_channel, publish_script, stream_key
from tests.servers import RedisServer
from tests.waiting import async_wait_until


def test_a_feed_that_loses_redis_before_its_first_event_reads_back_what_was_published_meanwhile(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis")  # its own: the test kills every pub/sub connection of the server
    server.start()
    settings = Settings.from_env(redis_url=server.url, redis_prefix="feed:")
    lms = SimulatedLMS(seed=5)

    async def scenario() -> tuple[str, list[str]]:
        client = redis_client(server.url)
        broker = RedisBroker(client, settings)
        await broker.publish(normalise(lms.next_event()))  # before the feed: not "from now on"
        feed = broker.live()
        first = asyncio.ensure_future(anext(feed))

        async def subscribed() -> bool:
            return dict(await client.pubsub_numsub(live_channel(settings))).get(
                live_channel(settings).encode(), 0) == 1

        await async_wait_until(subscribed, 10, "the feed did not subscribe")
        # The subscription dies, and an event is published before the feed can subscribe again (one
        # round trip: Redis runs both commands before it reads anything else).
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        pipe.eval(publish_script(False), 2, stream_key(settings), live_channel(settings),
                  settings.stream_maxlen, orjson.dumps(normalise(lms.next_event())))
        _, published = await pipe.execute()
        missed = published.decode()
        entries = [await asyncio.wait_for(first, 10)]
        after = await broker.publish(normalise(lms.next_event()))
        entries.append(await asyncio.wait_for(anext(feed), 10))
        await feed.aclose()
        await broker.close()
        assert all(isinstance(entry, Entry) for entry in entries)
        return missed, [entry.cursor for entry in entries if entry.cursor] + [after]

    try:
        missed, cursors = asyncio.run(scenario())
    finally:
        server.stop()
    assert cursors[0] == missed, "the event published while the feed resubscribed is read back first"
    assert cursors[1] == cursors[2], "then live events follow"
