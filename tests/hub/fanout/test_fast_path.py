"""The fan-out's fast path writes frames straight to the transport, and clients cannot tell.

A real uvicorn server with `FrameWriterProtocol` and real `websockets` clients, with and without
permessage-deflate: frames of every length class (7-bit, 16-bit and 64-bit lengths, non-ASCII)
written in one batch arrive whole and in order. Through a real hub, a plain client (shared wire
bytes) and a compressing client get the same events as a client of the ASGI path would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import uvicorn
import websockets

from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.delivery.websocket.writer import EXTENSION, UVICORN_WS, TransportWriter
from hub.dev.embedded import free_port
from hub.dev.simulator import SimulatedLMS
from hub.fanout.dispatch import BURST, MAX_BURST, Fanout
from hub.fanout.render import Frame
from hub.ingest import Entry
from hub.redis import client as redis_client
from hub.translate import TranslationSettings
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub
from tests.servers import RedisServer
from tests.waiting import async_wait_until, wait_until
from tests.wsclient import collect

TEXTS = ["short", "é" * 100, "x" * 200, "y" * 70_000, '{"type": "event", "data": "ünïcødé ✓"}']


async def writer_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Accept, wait for the client's first frame, write every text in one batch, then close."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    writer = scope["extensions"].get(EXTENSION)
    await receive()
    if not isinstance(writer, TransportWriter) or not writer.ready:
        await send({"type": "websocket.close", "code": 1011, "reason": "no frame writer"})
        return
    writer.write([Frame(f"{index}-0", text) for index, text in enumerate(TEXTS, start=1)])
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def writer_server() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(writer_app, host="127.0.0.1", port=port, log_level="warning",
                                           ws=UVICORN_WS, ws_max_size=2**20))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "uvicorn did not start")
    yield f"ws://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(5)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_a_batch_written_to_the_transport_arrives_whole_and_in_order(writer_server: str, compression) -> None:
    async def scenario() -> tuple[list[str], int | None]:
        async with websockets.connect(writer_server, compression=compression, max_size=2**20) as ws:
            assert (ws.protocol.extensions != []) == (compression == "deflate")
            await ws.send("go")
            received = [message async for message in ws]
            return received, ws.close_code

    received, code = asyncio.run(scenario())
    assert code == 1000
    assert received == TEXTS


def test_plain_and_compressing_clients_of_the_hub_get_the_same_frames(hub: Hub, token: str) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=23)

    async def open_client(compression: str | None) -> websockets.ClientConnection:
        ws = await websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"},
                                      compression=compression)
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.send(orjson.dumps({"type": "subscribe"}).decode())
        return ws

    async def scenario() -> tuple[list[dict], list[dict], list[str]]:
        plain, deflate = await open_client(None), await open_client("deflate")
        # until the hub has taken both `subscribe` frames, so the events go out live: a subscribe has no
        # acknowledgement to wait for (events before it would be held, then released in one go)
        await asyncio.sleep(0.3)
        cursors = [await asyncio.to_thread(backend.send, lms.next_event()) for _ in range(200)]
        got_plain, got_deflate = await collect(plain, 200, 20), await collect(deflate, 200, 20)
        await plain.close()
        await deflate.close()
        return got_plain, got_deflate, cursors

    got_plain, got_deflate, cursors = asyncio.run(scenario())
    backend.close()
    assert [frame["cursor"] for frame in got_plain] == cursors
    assert got_plain == got_deflate


class RecordingWriter:
    """A `FrameWriter` that keeps each write's frames; `ready` as a paused or drained transport says."""

    def __init__(self) -> None:
        self.ready = True
        self.closed = False
        self.writes: list[list[str | None]] = []

    async def writable(self) -> None:
        while not self.ready:
            await asyncio.sleep(0.001)  # polls the flag the test flips, as a transport's drain would resolve

    def write(self, frames) -> None:  # type: ignore[no-untyped-def]
        self.writes.append([frame.cursor for frame in frames])


def _live_connection(writer: RecordingWriter, **options: Any):  # type: ignore[no-untyped-def]
    """A connection entitled to every event, writing through `writer`; `options` go to `Connection`."""
    from auth.identity import ClientIdentity
    from hub.fanout.subscriber import Connection
    from rthub_lms.grants import compile_grant

    async def no_asgi_send(text: str) -> None:
        raise AssertionError("the writer is there: nothing goes through ASGI")

    conn = Connection(ClientIdentity("c", "adaptive", "xapi"), compile_grant([{}]), **options)
    conn.start(writer, no_asgi_send)
    return conn


def test_a_live_frame_to_an_idle_socket_is_written_at_once_and_never_ahead_of_queued_ones() -> None:
    async def scenario() -> list[list[str | None]]:
        writer = RecordingWriter()
        conn = _live_connection(writer)
        conn.release_live()
        conn.offer(Frame("1-0", "one"))
        assert writer.writes == [["1-0"]], "an idle socket's frame waits for the end of the tick"
        writer.ready = False  # the transport paused: frames queue
        conn.offer(Frame("2-0", "two"))
        writer.ready = True
        conn.offer(Frame("3-0", "three"))  # ready again, but 2-0 is still pending: 3-0 goes behind it
        assert writer.writes == [["1-0"]]
        await async_wait_until(lambda: len(writer.writes) == 2, 10, "the queued frames were never written")
        conn.offer(Frame("4-0", "four"))
        return writer.writes

    assert asyncio.run(scenario()) == [["1-0"], ["2-0", "3-0"], ["4-0"]]


def test_a_catch_up_queues_its_frames_and_they_go_out_in_one_write() -> None:
    async def scenario() -> list[list[str | None]]:
        writer = RecordingWriter()
        conn = _live_connection(writer)
        conn.begin_resume("0-0")
        for number in range(1, 6):
            await conn.put_resumed(Frame(f"{number}-0", "resumed"))
        assert writer.writes == []
        conn.release_live()
        await asyncio.sleep(0)  # one loop turn: the end of the tick flushes
        return writer.writes

    assert asyncio.run(scenario()) == [["1-0", "2-0", "3-0", "4-0", "5-0"]]


def test_entries_offered_in_one_tick_after_the_first_go_out_in_one_write_per_socket() -> None:
    """A burst (entries waiting when the fan-out reads them) costs one write per socket, not one per frame;
    the first entry of a tick and a lone entry of a later tick are still written at once."""

    async def scenario() -> tuple[list[list[str | None]], list[list[str | None]]]:
        writer = RecordingWriter()
        conn = _live_connection(writer)
        conn.release_live()
        for number in range(1, 5):  # four entries read from one buffer, no await between them
            conn.end_of_tick.entry()
            conn.offer(Frame(f"{number}-0", "burst"))
        in_tick = [list(write) for write in writer.writes]
        await asyncio.sleep(0)  # one loop turn: the tick ends
        conn.end_of_tick.entry()
        conn.offer(Frame("5-0", "alone"))
        return in_tick, writer.writes

    in_tick, writes = asyncio.run(scenario())
    assert in_tick == [["1-0"]], "frames of the burst's later entries wait for the end of the tick"
    assert writes == [["1-0"], ["2-0", "3-0", "4-0"], ["5-0"]]


def _slice_ends(count: int) -> list[int]:
    """Where the loop gets to run during a backlog of `count` entries: after a slice of `BURST`
    entries, then after slices twice as long each time, up to `MAX_BURST` entries."""
    ends, size, total = [], BURST, 0
    while total + size <= count:
        total += size
        ends.append(total)
        size = min(2 * size, MAX_BURST)
    return ends


def _run_backlogs(redis_server: RedisServer, prefix: str, backlogs: list[int]) -> tuple[list[int], int]:
    """Feed a fan-out with no sockets `backlogs` (entries handed over with no await between them, the
    feed waiting once between two backlogs, as for a read), and note how far it had got each time the
    loop let another task run."""
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix)
    lms = SimulatedLMS(seed=3)
    numbers = iter(range(sum(backlogs)))

    async def scenario() -> tuple[list[int], int]:
        client = redis_client(redis_server.url)
        fanout = Fanout(Anonymiser(RedisIdStore(client, settings)), TranslationSettings("http://lms", "test"))
        seen: list[int] = []
        finished = asyncio.Event()

        async def watch() -> None:
            while not finished.is_set():
                seen.append(fanout.counts["ingested"])
                await asyncio.sleep(0)  # one sample per loop turn

        async def feed() -> AsyncIterator[Entry]:
            for index, size in enumerate(backlogs):
                if index:
                    await asyncio.sleep(0)  # the feed waits for its next read: the loop runs
                for _ in range(size):
                    yield Entry(f"{1_700_000_000_000 + next(numbers)}-0", lms.next_event())

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)  # one loop turn: the watcher starts
        await fanout.run(feed())
        finished.set()
        await watcher
        await client.aclose()
        return seen, fanout.counts["ingested"]

    return asyncio.run(scenario())


def test_a_backlog_is_dispatched_in_slices_that_grow_while_the_hub_stays_behind(
    redis_server: RedisServer, prefix: str
) -> None:
    """A read that brings a backlog gives the fan-out entries with no wait between them; the loop
    still runs (handshakes, pings, socket flushes) after a slice of `BURST` of them, and while
    entries keep waiting each slice is twice as long as the last, up to `MAX_BURST` (so a hub that
    stays behind writes each socket once per many frames)."""
    count = BURST + 2 * BURST + 4 * BURST + 2 * MAX_BURST + 5
    seen, ingested = _run_backlogs(redis_server, prefix, [count])
    assert ingested == count
    assert MAX_BURST > 4 * BURST, "the backlog above reaches the longest slice"
    assert sorted(set(seen)) == [0, *_slice_ends(count)]
    assert sorted(set(seen))[:4] == [0, BURST, 3 * BURST, 7 * BURST]


def test_the_slice_falls_back_to_burst_once_the_hub_has_caught_up(redis_server: RedisServer, prefix: str) -> None:
    """After a backlog the feed waits for its next read: the next backlog starts with a short
    slice again, so a passing backlog never holds frames for a long slice."""
    first, second = 2 * BURST, BURST + 5
    seen, ingested = _run_backlogs(redis_server, prefix, [first, second])
    assert ingested == first + second
    assert _slice_ends(first) == [BURST], "the first backlog's second slice would be longer than BURST"
    assert sorted(set(seen)) == [0, BURST, first, first + BURST]


def test_a_backlog_slice_never_fills_the_send_queue_of_a_socket_that_keeps_up(
    redis_server: RedisServer, prefix: str
) -> None:
    """A socket entitled to every event takes a whole slice's frames before it is written to, so the
    slice stays within half its send queue (`RTHUB_SEND_QUEUE_SIZE`): during a long backlog a socket
    that keeps up gets every frame and is never closed as a slow consumer."""
    queue_size = 8
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, send_queue_size=queue_size)
    lms = SimulatedLMS(seed=5)
    numbers = iter(range(10**6))

    def entries(count: int) -> list[Entry]:
        return [Entry(f"{1_700_000_000_000 + next(numbers)}-0", lms.next_event()) for _ in range(count)]

    async def feed(items: list[Entry]) -> AsyncIterator[Entry]:
        for item in items:
            yield item

    async def scenario() -> tuple[RecordingWriter, int | None, int]:
        client = redis_client(redis_server.url)
        fanout = Fanout(Anonymiser(RedisIdStore(client, settings)), TranslationSettings("http://lms", "test"),
                        queue_size=settings.send_queue_size)
        writer = RecordingWriter()
        conn = _live_connection(writer, queue_size=queue_size, end_of_tick=fanout.end_of_tick)
        conn.release_live()
        fanout.add(conn)
        await fanout.run(feed(entries(300)))  # every learner's anonymised id is cached after this
        await fanout.run(feed(entries(600)))  # so this backlog is dispatched with no await at all
        await asyncio.sleep(0)  # one loop turn: the tick ends and flushes
        await client.aclose()
        return writer, conn.close_code, fanout.counts["translated:xapi"]

    writer, close_code, translated = asyncio.run(scenario())
    assert close_code is None
    assert sum(len(write) for write in writer.writes) == translated > 800
    assert max(len(write) for write in writer.writes) <= queue_size // 2
