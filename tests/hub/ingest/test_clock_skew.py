"""The hub judged live cursors by its own clock, so a Redis whose clock ran a minute
ahead had every live event dead-lettered while `/readyz` said 200.

Redis makes stream ids from its own clock. Here the stream's last id is set 2 minutes ahead of the
hub's clock (one XADD with an explicit id, as a Redis whose clock ran ahead would have left it); every
event after it then goes through the real publisher, and Redis itself gives them ids that far ahead.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import redis

from hub.dev.simulator import SimulatedLMS
from hub.ingest import cursor_key
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from rthub_lms.events import normalise
from tests import SEND_TIMEOUT
from tests.hubproc import Hub
from tests.wsclient import collect, connect, quiet

SKEW_MS = 120_000


def test_a_redis_clock_ahead_of_the_hub_delivers_everything(hub: Hub, token: str) -> None:
    server = redis.Redis.from_url(hub.redis_url)
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=11)
    ahead = int(time.time() * 1000) + SKEW_MS
    server.xadd(rkeys.stream_key(hub.settings), {"e": orjson.dumps(normalise(lms.next_event()))}, id=f"{ahead}-0")

    async def scenario() -> tuple[list[dict], list[str]]:
        ws = await connect(hub.ws, token)
        cursors = [backend.send(lms.next_event()) for _ in range(25)]
        frames = await collect(ws, 25)
        await ws.close()
        return frames, cursors

    frames, cursors = asyncio.run(scenario())
    assert all(cursor_key(c)[0] >= ahead for c in cursors), "Redis gave the events ids ahead of the hub's clock"
    assert [f["cursor"] for f in frames] == cursors
    assert server.xlen(rkeys.ingest_deadletters_key(hub.settings)) == 0
    assert httpx.get(f"{hub.http}/readyz", timeout=5).status_code == 200


def test_a_forged_live_cursor_past_the_stream_is_still_dead_lettered(hub: Hub, token: str) -> None:
    """The check that replaced the clock: a live cursor far ahead of the last one must exist in the stream."""
    server = redis.Redis.from_url(hub.redis_url)
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=12)

    async def scenario() -> tuple[list[dict], list[dict], str]:
        ws = await connect(hub.ws, token)
        first = backend.send(lms.next_event())
        before = await collect(ws, 1)
        forged = f"{cursor_key(first)[0] + 3_600_000}-0"
        payload = orjson.dumps(normalise(lms.next_event()))
        server.publish(rkeys.live_channel(hub.settings), forged.encode() + b"\n" + payload)
        later = backend.send(lms.next_event())
        after = await collect(ws, 1) + await quiet(ws, 0.3)
        await ws.close()
        return before, after, later

    before, after, later = asyncio.run(scenario())
    assert [f["cursor"] for f in after] == [later], "the forged cursor hid nothing and was not delivered"
    dead = server.xrange(rkeys.ingest_deadletters_key(hub.settings))
    assert len(dead) == 1 and dead[0][1][b"reason"] == b"bad_cursor", dead
    assert before
