"""The hub's per-event work in one process, against the bare loop's on the same events, same run.

    python -m bench.dispatch [--events 20000] [--repeat 5] [--backlog]

`bench.e2e` measures whole processes on a shared machine, where CPU per frame moves ±10 % from
round to round; this takes the network and the other processes out, so that a change to the
fan-out shows as a steady figure. Both sides read the same live messages (`cursor\\nevent-json`)
and write to 100 sockets whose transports discard what they are given, 10 per course:

- **hub**: `decode_live`, then `Fanout.dispatch` (facts, grant index, anonymise from a warm cache,
  translate to xAPI, encode, offer) to real `Connection`s writing through the real
  `TransportWriter`, with the delivery-latency metric, as `rthub serve` runs them;
- **bare loop**: what `bench.bare_loop` does per message: parse, pick the course's sockets, encode
  the event once, then `websockets.broadcast`'s work per socket (the sans-I/O protocol's
  `send_text` and `data_to_send`, one transport write).

By default each event is handed over on its own, the loop running between two (a hub keeping up).
`--backlog` hands a round's events over at once, as one read of a hub that fell behind brings them
(the hub through `Fanout.run`, which slices a backlog and writes each socket once per slice), and
the sockets are real: each write is a system call into a Unix socket pair, read between rounds.

CPU is `time.process_time()` over the timed events, after a warm-up; the median of the repeats is
reported, each side's repeats alternating with the other's, with the socket writes per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
from websockets.protocol import State
from websockets.server import ServerProtocol

from auth.identity import ClientIdentity
from bench.harness import COURSE_COUNT, COURSES, make_events
from hub.anonymise import Anonymiser
from hub.delivery.websocket.writer import TransportWriter
from hub.fanout.dispatch import Fanout
from hub.fanout.subscriber import Connection
from hub.ingest import BadEntry, Entry
from hub.ingest.redis import decode_live
from hub.metrics import Metrics
from hub.translate import TranslationSettings
from rthub_lms.grants import compile_grant, validate_grant

SUBSCRIBERS = 100
WARM_UP = 1000
SETTINGS = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@bench")


class DiscardingTransport:
    writes = 0

    def write(self, data: bytes) -> None:
        DiscardingTransport.writes += 1


class SocketTransport(DiscardingTransport):
    """A real socket write (one system call) into a Unix socket pair whose far end is read between
    rounds (`drain_all`), so that the cost of each write, not only the count, shows."""

    opened: list[SocketTransport] = []

    def __init__(self) -> None:
        SocketTransport.opened.append(self)
        self.sock, self.far = socket.socketpair()
        for end, option in ((self.sock, socket.SO_SNDBUF), (self.far, socket.SO_RCVBUF)):
            end.setsockopt(socket.SOL_SOCKET, option, 8 * 2**20)
        self.far.setblocking(False)

    def write(self, data: bytes) -> None:
        super().write(data)
        self.sock.sendall(data)

    @classmethod
    def drain_all(cls) -> None:
        for transport in cls.opened:
            with contextlib.suppress(BlockingIOError):
                while transport.far.recv(2**20):
                    pass


class OpenSocket:
    """What `TransportWriter` reads of uvicorn's WebSocket protocol: an open, drained socket."""

    def __init__(self, transport: DiscardingTransport) -> None:
        self.conn = ServerProtocol(state=State.OPEN)
        self.transport = transport
        self.writable = asyncio.Event()
        self.writable.set()
        self.handshake_complete = True
        self.disconnected = False
        self.close_sent = False


class WarmIds:
    """Anonymised ids without Redis; the anonymiser's cache answers after the warm-up anyway."""

    async def get_or_create(self, consumer_type: str, user_id: str) -> str:
        return f"00000000-0000-4000-8000-{abs(hash((consumer_type, user_id))) % 10**12:012d}"


def live_messages(count: int, first_millis: int = 1_700_000_000_000) -> list[bytes]:
    return [f"{first_millis + number}-0\n".encode() + orjson.dumps(event)
            for number, event in enumerate(make_events(count))]


async def _no_send(text: str) -> None:
    raise AssertionError("the writer is always ready here")


def hub_fanout(transport: type[DiscardingTransport] = DiscardingTransport) -> Fanout:
    fanout = Fanout(Anonymiser(WarmIds()), SETTINGS)
    metrics = Metrics()
    for index in range(SUBSCRIBERS):
        course = COURSES[index % COURSE_COUNT]
        grant = validate_grant([{"courses": [course]}])
        identity = ClientIdentity(f"bench-{index % COURSE_COUNT}", "adaptive", "xapi", grant)
        conn = Connection(identity, compile_grant(grant), end_of_tick=fanout.end_of_tick)
        conn.release_live()
        conn.on_sent = metrics.frames_sent
        conn.start(TransportWriter(OpenSocket(transport())), _no_send)  # type: ignore[arg-type]
        fanout.add(conn)
    return fanout


async def run_hub(fanout: Fanout, messages: list[bytes]) -> float:
    """CPU seconds for `messages`, yielding to the loop after each as the live feed does when idle."""
    started = time.process_time()
    for message in messages:
        await fanout.dispatch(decode_live(message))
        await asyncio.sleep(0)
    return time.process_time() - started


def bare_sockets(
    transport: type[DiscardingTransport] = DiscardingTransport,
) -> dict[str, list[tuple[ServerProtocol, DiscardingTransport]]]:
    by_course: dict[str, list[tuple[ServerProtocol, DiscardingTransport]]] = defaultdict(list)
    for index in range(SUBSCRIBERS):
        by_course[COURSES[index % COURSE_COUNT]].append((ServerProtocol(state=State.OPEN), transport()))
    return by_course


async def run_hub_backlog(fanout: Fanout, messages: list[bytes]) -> float:
    """CPU seconds for `messages` handed over at once, as one read of a hub that fell behind brings
    them: `Fanout.run` slices them and writes each socket once per slice."""
    async def backlog() -> AsyncIterator[Entry | BadEntry]:
        for message in messages:
            yield decode_live(message)

    started = time.process_time()
    await fanout.run(backlog())
    await asyncio.sleep(0)  # the last slice's end of tick
    return time.process_time() - started


async def run_bare_backlog(by_course: dict[str, list[Any]], messages: list[bytes]) -> float:
    """The bare loop on the same backlog: `websockets.broadcast` writes every frame as it comes."""
    started = time.process_time()
    for message in messages:
        _broadcast(by_course, message)
    return time.process_time() - started


async def run_bare(by_course: dict[str, list[Any]], messages: list[bytes]) -> float:
    started = time.process_time()
    for message in messages:
        _broadcast(by_course, message)
        await asyncio.sleep(0)
    return time.process_time() - started


def _broadcast(by_course: dict[str, list[Any]], message: bytes) -> None:
    cursor, _, payload = message.partition(b"\n")
    event = orjson.loads(payload)
    targets = by_course.get(event["context"]["course_id"])
    if targets:
        frame = {"type": "event", "cursor": cursor.decode(), "event_type": event["name"], "data": event}
        text = orjson.dumps(frame)
        for protocol, transport in targets:
            if protocol.state is State.OPEN:
                protocol.send_text(text)
                transport.write(b"".join(protocol.data_to_send()))


async def measure(events: int, repeat: int, backlog: bool = False) -> tuple[dict[str, list[float]], dict[str, int]]:
    """CPU seconds per round and socket writes in all, per side."""
    transport = SocketTransport if backlog else DiscardingTransport
    fanout, by_course = hub_fanout(transport), bare_sockets(transport)
    await run_hub(fanout, live_messages(WARM_UP))
    await run_bare(by_course, live_messages(WARM_UP))
    runners = {"hub": run_hub_backlog if backlog else run_hub, "bare loop": run_bare_backlog if backlog else run_bare}
    seconds: dict[str, list[float]] = {"hub": [], "bare loop": []}
    writes = {"hub": 0, "bare loop": 0}
    for round_number in range(repeat):
        # Fresh cursors each round: the render cache must not answer for an event already seen.
        messages = live_messages(events, first_millis=1_800_000_000_000 + round_number * events)
        order = [("hub", fanout), ("bare loop", by_course)]
        for name, state in order if round_number % 2 == 0 else reversed(order):
            SocketTransport.drain_all()
            before = DiscardingTransport.writes
            seconds[name].append(await runners[name](state, messages))  # type: ignore[operator]
            writes[name] += DiscardingTransport.writes - before
    translated = fanout.counts["translated:xapi"]
    if translated != WARM_UP + events * repeat:
        raise RuntimeError(f"the hub translated {translated} events, expected {WARM_UP + events * repeat}")
    return seconds, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backlog", action="store_true",
                        help="hand each round's events over at once (a hub that fell behind), to real sockets")
    args = parser.parse_args()
    seconds, writes = asyncio.run(measure(args.events, args.repeat, args.backlog))
    per_event = {name: 1e6 * statistics.median(values) / args.events for name, values in seconds.items()}
    frames = args.events * SUBSCRIBERS / COURSE_COUNT
    for name, micros in per_event.items():
        spread = ", ".join(f"{1e6 * value / args.events:.1f}" for value in seconds[name])
        print(f"{name:10} {micros:6.1f} µs/event  {micros * args.events / frames:5.2f} µs/frame  "
              f"{writes[name] / (args.events * args.repeat):5.2f} writes/event  (runs: {spread})")
    print(f"hub / bare loop = {per_event['hub'] / per_event['bare loop']:.2f}x per event "
          f"({SUBSCRIBERS} subscribers, {SUBSCRIBERS // COURSE_COUNT} per event)")


if __name__ == "__main__":
    main()
