"""The walking skeleton end to end: LMS backend -> Redis -> hub -> WebSocket subscribers."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from eventtracking.tracker import Tracker

from hub.dev.simulator import SimulatedLMS
from hub.ingest import cursor_key
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import ROOT, Hub
from tests.servers import RedisServer
from tests.wsclient import collect, connect, quiet


def _backend(hub: Hub) -> RealtimeBackend:
    return RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)


def test_published_events_arrive_in_order_with_increasing_cursors(hub: Hub, token: str) -> None:
    backend = _backend(hub)
    lms = SimulatedLMS(seed=1)

    async def scenario() -> list[dict]:
        ws = await connect(hub.ws, token)
        sent = [lms.next_event() for _ in range(30)]
        cursors = [backend.send(event) for event in sent]
        assert all(cursors), backend.counts
        frames = await collect(ws, 30)
        await ws.close()
        return frames, sent, cursors

    frames, sent, cursors = asyncio.run(scenario())
    assert [f["type"] for f in frames] == ["event"] * 30
    assert [f["cursor"] for f in frames] == cursors
    assert [f["event_type"] for f in frames] == [e["name"] for e in sent]
    keys = [cursor_key(f["cursor"]) for f in frames]
    assert keys == sorted(keys) and len(set(keys)) == 30
    assert all("actor" in (f["data"][0] if isinstance(f["data"], list) else f["data"]) for f in frames)


def test_two_subscribers_both_receive_every_event(hub: Hub, token: str) -> None:
    backend = _backend(hub)
    lms = SimulatedLMS(seed=2)

    async def scenario() -> tuple[list[dict], list[dict]]:
        first, second = await connect(hub.ws, token), await connect(hub.ws, token)
        for _ in range(20):
            backend.send(lms.next_event())
        result = await asyncio.gather(collect(first, 20), collect(second, 20))
        await first.close()
        await second.close()
        return result

    one, two = asyncio.run(scenario())
    assert [f["cursor"] for f in one] == [f["cursor"] for f in two]
    assert len(one) == 20


def test_event_tracking_tracker_delivers_through_the_backend(hub: Hub, token: str) -> None:
    tracker = Tracker(backends={"realtime": _backend(hub)})
    context = {"course_id": "course-v1:MITx+6.002x+2026_T1", "org_id": "MITx", "user_id": 42,
               "username": "alice", "host": "lms.example.org"}

    async def scenario() -> list[dict]:
        ws = await connect(hub.ws, token)
        with tracker.context("request", context):
            tracker.emit("edx.course.enrollment.activated",
                         {"course_id": context["course_id"], "user_id": 42, "mode": "verified"})
            tracker.emit("play_video", {"id": "intro", "currentTime": 12.5, "code": "html5"})
        frames = await collect(ws, 2)
        await ws.close()
        return frames

    frames = asyncio.run(scenario())
    assert [f["event_type"] for f in frames] == ["edx.course.enrollment.activated", "play_video"]
    text = json.dumps(frames)
    assert "alice" not in text and '"42"' not in text


def test_publish_command_replays_a_log_and_reports_the_bad_line(hub: Hub, token: str, tmp_path: Path) -> None:
    lms = SimulatedLMS(seed=3)
    lines = [json.dumps(lms.next_event()) for _ in range(5)]
    lines.insert(2, "{not json")
    lines.insert(4, '{"name": "x", "timestamp": "2026-01-01T00:00:00Z", "data": ' + "[" * 2000 + "]" * 2000 + "}")
    log = tmp_path / "tracking.log.gz"
    log.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    async def scenario() -> tuple[subprocess.CompletedProcess[str], list[dict]]:
        ws = await connect(hub.ws, token)
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hub.cli", "publish", str(log), "--redis-url", hub.redis_url,
             "--redis-prefix", hub.prefix],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        frames = await collect(ws, 5)
        extra = await quiet(ws, 0.3)
        await ws.close()
        return result, frames + extra

    result, frames = asyncio.run(scenario())
    assert result.returncode == 0, result.stderr
    assert "line 3: skipped, invalid JSON" in result.stderr
    assert "line 5: skipped, JSON nested too deep" in result.stderr
    assert "published 5 events, skipped 2 bad lines" in result.stderr
    assert len(frames) == 5


def test_send_with_redis_stopped_returns_quickly_without_raising(own_redis: RedisServer) -> None:
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix="down:", preemptive=False, spool_max_bytes=0)
    event = SimulatedLMS(seed=4).next_event()
    assert backend.send(event) is not None
    own_redis.stop(kill=True)
    started = time.perf_counter()
    results = [backend.send(event) for _ in range(100)]
    elapsed = time.perf_counter() - started
    assert results == [None] * 100
    assert backend.counts["unavailable"] == 100
    assert elapsed < 1.0, f"100 sends with Redis down took {elapsed:.3f}s"


def test_malformed_events_are_counted_not_raised(redis_server: RedisServer, prefix: str) -> None:
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, timeout=SEND_TIMEOUT)
    for bad in ({}, {"name": "x"}, {"name": "x", "timestamp": "yesterday"}, ["not", "a", "dict"], None):
        assert backend.send(bad) is None  # type: ignore[arg-type]
    assert backend.counts["malformed"] + backend.counts["failed"] == 5
    assert redis.Redis.from_url(redis_server.url).xlen(rkeys.stream_key(rkeys.Prefix(prefix))) == 0


@pytest.mark.parametrize("bad_token", ["", "wrong-token"])
def test_bad_token_is_closed_with_4401(hub: Hub, bad_token: str) -> None:
    import websockets

    async def scenario() -> int:
        async with websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {bad_token}"}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 4401


def test_event_frames_carry_no_learner_identity(hub: Hub, token: str) -> None:
    backend = _backend(hub)
    lms = SimulatedLMS(seed=5)
    sent = [lms.next_event() for _ in range(40)]

    async def scenario() -> list[dict]:
        ws = await connect(hub.ws, token)
        for event in sent:
            backend.send(event)
        frames = await collect(ws, 40)
        await ws.close()
        return frames

    text = orjson.dumps(asyncio.run(scenario())).decode()
    for event in sent:
        for field in ("username", "ip", "agent", "session"):
            assert str(event["context"][field]) not in text
