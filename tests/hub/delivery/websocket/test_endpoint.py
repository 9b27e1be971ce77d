"""WebSocket delivery guarantees: resume without gap or duplicate, gap frames, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest
import redis
import websockets

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend, StreamWriter
from rthub_lms.events import normalise
from tests import SEND_TIMEOUT
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.wsclient import StalledClient, collect, connect, quiet


def _writer(hub: Hub) -> StreamWriter:
    settings = Settings.from_env(redis_url=hub.redis_url, redis_prefix=hub.prefix)
    return StreamWriter(redis.Redis.from_url(hub.redis_url), settings)


def _events(count: int, seed: int) -> list[dict]:
    lms = SimulatedLMS(seed=seed)
    return [normalise(lms.next_event()) for _ in range(count)]


def _large_answers(count: int) -> list[dict]:
    """problem_check events whose long answers make ~6 KB frames, so kernel buffers fill quickly."""
    lms = SimulatedLMS(seed=23)
    events = []
    while len(events) < count:
        event = lms.next_event()
        if event["name"] == "problem_check":
            answer_id = next(iter(event["data"]["answers"]))
            event["data"]["answers"][answer_id] = random.randbytes(2500).hex()  # incompressible
            events.append(normalise(event))
    return events


def test_resume_after_a_dropped_socket_delivers_everything_once_in_order(
    hub: Hub, token: str
) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=21)

    async def scenario() -> tuple[list[str], list[str]]:
        ws = await connect(hub.ws, token)
        published = [backend.send(lms.next_event()) for _ in range(10)]
        first = await collect(ws, 10)
        await ws.close()
        published += [backend.send(lms.next_event()) for _ in range(25)]
        ws = await connect(hub.ws, token, {"type": "subscribe", "resume_from": first[-1]["cursor"]})

        async def publish_live() -> list[str]:
            cursors = []
            for _ in range(15):
                cursors.append(backend.send(lms.next_event()))
                await asyncio.sleep(0.005)  # pacing: live events trickle in while the resume catches up
            return cursors

        live, rest = await asyncio.gather(publish_live(), collect(ws, 40))
        published += live
        rest += await quiet(ws, 0.3)
        await ws.close()
        return published, [f["cursor"] for f in first + rest]

    published, received = asyncio.run(scenario())
    assert received == published


def test_resume_with_a_cursor_older_than_retention_gets_a_gap_frame(
    redis_server: RedisServer, prefix: str
) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_STREAM_MAXLEN": "10"})
    hub.start()
    token = hub.token()
    try:
        writer = _writer(hub)
        writer._maxlen = 10
        cursors = writer.write_many(_events(600, seed=22))
        stream = rkeys.stream_key(rkeys.Prefix(prefix))
        oldest = redis.Redis.from_url(hub.redis_url).xrange(stream, count=1)[0][0].decode()
        assert oldest != cursors[0], "the stream was not trimmed; the test cannot show a gap"

        async def scenario() -> list[dict]:
            ws = await connect(hub.ws, token, {"type": "subscribe", "resume_from": cursors[0]})
            retained = cursors.index(oldest)
            frames = await collect(ws, 1 + len(cursors) - retained)
            await ws.close()
            return frames

        frames = asyncio.run(scenario())
    finally:
        hub.stop()
    assert frames[0] == {"type": "gap", "from": cursors[0], "resume_from": oldest}
    assert [f["cursor"] for f in frames[1:]] == cursors[cursors.index(oldest):]


@pytest.mark.slow
def test_slow_consumer_is_closed_with_4008_while_a_fast_one_keeps_up(
    redis_server: RedisServer, prefix: str
) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_SEND_QUEUE_SIZE": "64"})
    hub.start()
    token = hub.token()
    events = _large_answers(3000)
    writer = _writer(hub)
    try:
        async def scenario() -> tuple[int | None, int]:
            slow = await asyncio.to_thread(StalledClient, hub.ws, hub.port, token)
            fast = await connect(hub.ws, token)
            for start in range(0, len(events), 20):
                await asyncio.to_thread(writer.write_many, events[start:start + 20])
                await asyncio.sleep(0.005)  # pacing
            received = await collect(fast, len(events), timeout=60)
            await fast.close()
            return await asyncio.to_thread(slow.close_code), len(received)

        code, fast_count = asyncio.run(scenario())
    finally:
        hub.stop()
    assert code == 4008
    assert fast_count == len(events)


@pytest.mark.slow
def test_a_consumer_that_stops_reading_during_a_catch_up_is_closed_with_4008(
    redis_server: RedisServer, prefix: str
) -> None:
    """A resume runs at the client's pace, but a client that takes nothing for the grace period is
    closed like any slow consumer, instead of holding its catch-up (and socket) forever."""
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_SEND_QUEUE_SIZE": "16"})
    hub.start()
    token = hub.token()
    writer = _writer(hub)
    try:
        first = writer.write_many(_large_answers(1))[0]
        writer.write_many(_large_answers(8000))  # ~9 MB of frames: far more than the socket buffers hold

        async def scenario() -> int | None:
            stalled = await asyncio.to_thread(StalledClient, f"{hub.ws}?resume_from={first}", hub.port, token)
            await asyncio.sleep(5)  # reading nothing, for longer than the 2 s grace period
            return await asyncio.to_thread(stalled.close_code, 20)

        code = asyncio.run(scenario())
    finally:
        hub.stop()
    assert code == 4008


@pytest.mark.hub_process
def test_sigterm_closes_sockets_with_1012(hub: HubProcess, token: str) -> None:
    async def scenario() -> int | None:
        ws = await connect(hub.ws, token)
        await asyncio.to_thread(hub.stop, signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 1012


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x01binary", 1003),
        ("not json", 1008),
        ('{"type": "dance"}', 1008),
        ('{"type": "subscribe", "filter": {"colour": ["red"]}}', 1008),
        ('{"type": "subscribe", "resume_from": "yesterday"}', 1008),
        ("x" * 70_000, 1009),
    ],
)
def test_bad_client_frames_close_with_a_clear_code(hub: Hub, token: str, frame: str | bytes, code: int) -> None:
    async def scenario() -> int | None:
        ws = await connect(hub.ws, token, {})
        await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == code


def test_flooding_client_frames_is_refused_with_1008(hub: Hub, token: str) -> None:
    async def scenario() -> int | None:
        ws = await connect(hub.ws, token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(200):
                await ws.send('{"type": "subscribe"}')
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 1008


def test_subscription_filter_narrows_what_arrives(hub: Hub, token: str) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=24)
    sent = [lms.next_event() for _ in range(60)]
    wanted = [e for e in sent if e["context"]["course_id"] == "course-v1:MITx+6.002x+2026_T1"]
    assert wanted and len(wanted) < len(sent)

    async def scenario() -> list[dict]:
        ws = await connect(hub.ws, token, {"type": "subscribe", "filter": {"courses": ["course-v1:MITx+*"]}})
        # until the hub has applied the filter, so the events meet it in the live fan-out (before it they are
        # held and filtered on release): a `subscribe` frame has no acknowledgement to wait for
        await asyncio.sleep(0.2)
        for event in sent:
            backend.send(event)
        frames = await collect(ws, len(wanted))
        frames += await quiet(ws, 0.3)
        await ws.close()
        return frames

    frames = asyncio.run(scenario())
    assert [f["event_type"] for f in frames] == [e["name"] for e in wanted]


def test_a_client_that_never_subscribes_gets_live_events_after_the_window(
    hub: Hub, token: str
) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=25)

    async def scenario() -> tuple[list[str], list[dict]]:
        ws = await connect(hub.ws, token, {})
        sent = [backend.send(lms.next_event()) for _ in range(5)]
        frames = await collect(ws, 5)
        await ws.close()
        return sent, frames

    sent, frames = asyncio.run(scenario())
    assert [f["cursor"] for f in frames] == sent


def test_a_client_that_stops_answering_pings_is_disconnected(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_WS_PING_INTERVAL": "0.3", "RTHUB_WS_PING_TIMEOUT": "0.3"})
    hub.start()
    try:
        token = hub.token()
        silent = StalledClient(hub.ws, hub.port, token)
        healthy_code = asyncio.run(_still_open_after(hub, token, 2.0))
        started = time.monotonic()
        silent.sock.settimeout(10)
        while silent.sock.recv(65536):
            pass
        waited = time.monotonic() - started
    finally:
        hub.stop()
    assert healthy_code is None, "a client that answers pings must stay connected"
    assert waited < 5, f"the silent client was dropped only after {waited:.1f}s"


async def _still_open_after(hub: Hub, token: str, seconds: float) -> int | None:
    ws = await connect(hub.ws, token)
    frames = await quiet(ws, seconds)
    code = None if ws.state == websockets.protocol.State.OPEN else ws.close_code
    await ws.close()
    assert frames == []
    return code
