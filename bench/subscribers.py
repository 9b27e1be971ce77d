"""WebSocket subscribers in separate processes, so receiving never competes with the parent's GIL.

Each process opens its share of the sockets, sends every socket's `subscribe` frame, and then
records `(subscriber, raw frame, receive time)` for everything that arrives. Receive times are
`time.perf_counter()`, which is CLOCK_MONOTONIC on Linux and so comparable across processes on one
machine. Frames are parsed only when the parent collects them, to keep the receive path short, and the
garbage collector is paused while they arrive: the list of records grows by one tuple per frame,
and a full collection over it (15-25 ms here) would delay every receive time behind it. It runs at
each collection instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import orjson
import psutil
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

# Handshakes in flight per process. The hub authenticates each with Redis round trips, and its
# redis-py pool (100 connections by default) fails outright rather than wait when a burst exceeds
# it, so the harness stays below that across its processes.
CONNECT_CONCURRENCY = 20

# A subscriber's bearer token and its `subscribe` filter (None: no filter).
Subscriber = tuple[str, dict[str, Any] | None]


def raise_file_limit() -> int:
    """Lift the soft open-files limit to the hard one (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Collected:
    """What one process received since the previous collection."""

    frames: list[tuple[int, bytes | str, float]]
    closes: list[tuple[int, int | None]]


class _Subscriber(asyncio.Protocol):
    """One socket: websockets' sans-I/O client protocol driven straight from `data_received`.

    The handshake, pings and the closing handshake are the library's; what arrives is parsed in the
    callback that received it, with no task woken per frame. The asyncio client cost ~33 µs per frame
    here (half a core at 15,000 frames/s, on the cores the target was measured on); this costs a
    fraction of that, so the harness stays well clear of the server it measures.
    """

    def __init__(self, index: int, url: str, token: str, filter_rule: dict[str, Any] | None,
                 frames: list[tuple[int, bytes | str, float]], closes: list[tuple[int, int | None]],
                 head: int | None) -> None:
        self.index, self.token, self.filter_rule = index, token, filter_rule
        self.frames, self.closes, self.head = frames, closes, head
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._welcomed = False
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {self.token}"
        self.protocol.send_request(request)
        self._send_pending()

    def data_received(self, data: bytes) -> None:
        received = time.perf_counter()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event, received)
            elif self.protocol.handshake_exc is not None and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"subscriber {self.index}: {self.protocol.handshake_exc}"))
        self._send_pending()

    def _frame(self, frame: Frame, received: float) -> None:
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return  # ping (the protocol queued the pong), pong, close (the protocol answers it)
        if not frame.fin:
            self._fragments.append(bytes(frame.data))
            return
        message = b"".join([*self._fragments, frame.data]) if self._fragments else bytes(frame.data)
        self._fragments.clear()
        if self._welcomed:
            self.frames.append((self.index, message if self.head is None else message[:self.head], received))
            return
        self._welcomed = True
        welcome = orjson.loads(message)
        if welcome.get("type") != "welcome":
            self.ready.set_exception(RuntimeError(f"subscriber {self.index}: expected welcome, got {welcome}"))
            return
        subscribe: dict[str, Any] = {"type": "subscribe"}
        if self.filter_rule is not None:
            subscribe["filter"] = self.filter_rule
        self.protocol.send_text(orjson.dumps(subscribe))
        self.ready.set_result(None)

    def _send_pending(self) -> None:
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            else:  # the protocol is done with the connection
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"subscriber {self.index}: connection lost ({exc})"))
        self.closes.append((self.index, self.protocol.close_code))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.protocol.send_close()
            self._send_pending()
            self.transport.close()


async def _serve(url: str, subscribers: dict[int, Subscriber], pipe: Connection, counter: Synchronized,
                 head: int | None) -> None:
    frames: list[tuple[int, bytes | str, float]] = []
    closes: list[tuple[int, int | None]] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    loop = asyncio.get_running_loop()
    where = parse_uri(url)

    async def open_one(index: int) -> _Subscriber:
        async with gate:
            token, filter_rule = subscribers[index]
            _, sub = await loop.create_connection(
                lambda: _Subscriber(index, url, token, filter_rule, frames, closes, head), where.host, where.port)
            await asyncio.wait_for(sub.ready, 60)
            return sub

    started = time.perf_counter()
    sockets = await asyncio.gather(*(open_one(index) for index in subscribers))
    pipe.send(("ready", time.perf_counter() - started))

    async def publish_count() -> None:
        while True:
            counter.value = len(frames)
            await asyncio.sleep(0.02)

    gc.disable()
    reporter = asyncio.create_task(publish_count())
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "collect":
            pipe.send(Collected(frames[:], closes[:]))
            frames.clear()
            closes.clear()
            counter.value = 0
            gc.collect()
        elif command == "close":
            break
    reporter.cancel()
    for sub in sockets:
        sub.close()
    await asyncio.gather(reporter, return_exceptions=True)
    pipe.send("closed")


def _process_main(url: str, subscribers: dict[int, Subscriber], pipe: Connection, counter: Synchronized,
                  head: int | None) -> None:
    raise_file_limit()
    try:
        asyncio.run(_serve(url, subscribers, pipe, counter, head))
    except Exception as exc:  # report to the parent instead of dying silently
        pipe.send(("error", repr(exc)))


@dataclass
class SubscriberPool:
    """Sockets spread over `processes` processes; subscriber i connects with `subscribers[i]`.

    With `head`, only the first `head` bytes of each frame are kept (enough for its cursor), so a
    run of millions of frames fits in memory.
    """

    url: str
    subscribers: list[Subscriber]
    processes: int = 2
    head: int | None = None
    open_seconds: float = 0.0
    _workers: list[tuple[mp.Process, Connection, Synchronized]] = field(default_factory=list)

    def __enter__(self) -> SubscriberPool:
        context = mp.get_context("spawn")
        for share in range(self.processes):
            mine = {index: self.subscribers[index] for index in range(share, len(self.subscribers), self.processes)}
            parent, child = context.Pipe()
            counter = context.Value("q", 0, lock=False)
            process = context.Process(target=_process_main, args=(self.url, mine, child, counter, self.head),
                                      daemon=True)
            process.start()
            self._workers.append((process, parent, counter))
        started = time.perf_counter()
        for _, pipe, _ in self._workers:
            reply = pipe.recv()
            if reply[0] != "ready":
                raise RuntimeError(f"subscriber process failed: {reply[1]}")
        self.open_seconds = time.perf_counter() - started
        return self

    def received(self) -> int:
        """Frames received since the last collection, as last reported by the processes (20 ms lag)."""
        return sum(counter.value for _, _, counter in self._workers)

    def wait_for(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.received() < total:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def cpu_seconds(self) -> float:
        return sum(sum(psutil.Process(process.pid).cpu_times()[:2]) for process, _, _ in self._workers)

    def collect(self) -> Collected:
        for _, pipe, _ in self._workers:
            pipe.send("collect")
        merged = Collected([], [])
        for _, pipe, _ in self._workers:
            part = pipe.recv()
            if isinstance(part, tuple):
                raise RuntimeError(f"subscriber process failed: {part[1]}")
            merged.frames.extend(part.frames)
            merged.closes.extend(part.closes)
        return merged

    def __exit__(self, *exc: object) -> None:
        for process, pipe, _ in self._workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send("close")
                if pipe.poll(10):
                    pipe.recv()
            process.join(5)
            if process.is_alive():
                process.kill()
        self._workers.clear()
