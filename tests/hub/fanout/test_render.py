"""A frame is rendered once, whether its learner's anonymised id is cached or not.

Against a real redis-server (the anonymiser's store): renders of one entry that meet while the first
waits for the learner's id share that render; a learner already known is rendered without touching
Redis; and each path gives the frame the other would.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import redis

from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.fanout.render import Renderer
from hub.ingest import Entry
from hub.redis import client as redis_client
from hub.translate import TranslationSettings
from rthub_lms.events import normalise
from tests.servers import RedisServer

TRANSLATION = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@test")


def entries(count: int) -> list[Entry]:
    lms = SimulatedLMS(seed=11)
    return [Entry(f"{1_700_000_000_000 + number}-0", normalise(lms.next_event())) for number in range(count)]


def store_writes(url: str) -> int:
    """HSETNX calls the server has run: one per anonymiser store read."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("commandstats").get("cmdstat_hsetnx", {}).get("calls", 0))
    finally:
        client.close()


def test_renders_that_meet_share_one_and_a_known_learner_needs_no_redis(redis_server: RedisServer, prefix: str) -> None:
    settings = Settings.from_env(redis_url=redis_server.url, redis_prefix=prefix)
    first, second = entries(2)

    async def scenario() -> None:
        client = redis_client(redis_server.url)
        counts: Counter[str] = Counter()
        renderer = Renderer(Anonymiser(RedisIdStore(client, settings)), TRANSLATION, counts, size=1)
        before = store_writes(redis_server.url)
        frames = await asyncio.gather(*(renderer.render(first, "xapi", "adaptive") for _ in range(5)))
        assert all(frame is frames[0] for frame in frames) and frames[0] is not None
        assert counts["translated:xapi"] == 1 and counts["render_joined"] == 4
        assert store_writes(redis_server.url) == before + 1

        await renderer.render(second, "xapi", "adaptive")  # evicts `first` (cache of one frame)
        reads = store_writes(redis_server.url)
        again = await renderer.render(first, "xapi", "adaptive")
        assert store_writes(redis_server.url) == reads  # the learner's id came from the cache
        assert counts["translated:xapi"] == 3 and counts["render_joined"] == 4
        assert again is not None and again is not frames[0]
        assert orjson.loads(again.text) == orjson.loads(frames[0].text)

        other_type = await renderer.render(first, "xapi", "enterprise")  # another consumer type: another id
        assert store_writes(redis_server.url) == reads + 1
        actors = {orjson.loads(frame.text)["data"]["actor"]["account"]["name"] for frame in (again, other_type)}
        assert len(actors) == 2
        await client.aclose()

    asyncio.run(scenario())


class FirstCallWaits:
    """The real store, with its first read held until `release` (a slow first round trip)."""

    def __init__(self, store: RedisIdStore) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.calls = 0

    async def get_or_create(self, consumer_type: str, user_id: str) -> str:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
        return await self.store.get_or_create(consumer_type, user_id)


def test_a_known_learner_still_joins_a_render_already_under_way(redis_server: RedisServer, prefix: str) -> None:
    """A render waits for the learner's id while a read for another entry brings the id into the
    cache: a second render of the first entry joins the one under way instead of translating again."""
    settings = Settings.from_env(redis_url=redis_server.url, redis_prefix=prefix)
    entry, = entries(1)
    learner = str(entry.event["context"]["user_id"])

    async def scenario() -> None:
        client = redis_client(redis_server.url)
        counts: Counter[str] = Counter()
        store = FirstCallWaits(RedisIdStore(client, settings))
        anonymiser = Anonymiser(store)
        renderer = Renderer(anonymiser, TRANSLATION, counts)
        waiting = asyncio.create_task(renderer.render(entry, "xapi", "adaptive"))
        await asyncio.sleep(0)  # one loop turn: the render starts
        assert store.calls == 1  # the first render is held in its store read
        await anonymiser.actor_id("adaptive", learner)
        assert anonymiser.known("adaptive", learner) is not None
        late = asyncio.create_task(renderer.render(entry, "xapi", "adaptive"))
        await asyncio.sleep(0)  # one loop turn: the late render starts
        assert not late.done()  # it waits for the render under way
        store.release.set()
        assert await late is await waiting
        assert counts["translated:xapi"] == 1 and counts["render_joined"] == 1
        await client.aclose()

    asyncio.run(scenario())
