"""One live subscriber: who it is, what it may see, and its bounded queue of encoded frames.

The connection knows nothing about WebSockets: the transport gives it a way to write (`start`) and
honours `close`. A live frame it takes while nothing is pending, the socket's writer is ready
and the fan-out is not in a burst (`EndOfTick.burst`) goes straight to the socket. Otherwise it
waits in `pending` (at most `queue_size`) until the end of the event-loop tick, when `flush` hands
all pending frames to the socket in one write if the writer is ready by then; failing that a
drain task waits for the transport to empty (or sends through ASGI, one frame at a time, under a
server without the fast path). So a fast consumer costs no task wake-up and no queueing per frame,
and a slow one is queued exactly as before.
A new connection holds its live frames until the client has said what it wants (a cursor on the
upgrade request, a `subscribe` frame, or the subscribe window passing), so a `resume_from` catch-up
can go first without a gap or a duplicate at the switch-over. A catch-up can also start later
(`begin_resume`): it then skips what was already queued, so every cursor is sent at most once.
Backpressure rule: when the queue is full the connection stops taking frames, keeps sending what
it already holds for `grace` seconds, then asks to be closed with 4008. Its last delivered cursor
precedes every frame it did not take, so a resume loses nothing. Held live frames that overflow
during a catch-up are dropped instead: they are in the stream, and the catch-up reads on to its end,
reading once more when a drop happened while its last read was on the way back (`held_drops`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from auth.clients import actor_space
from auth.closecodes import CloseCode
from auth.identity import ClientIdentity
from hub.fanout.render import Frame
from hub.ingest import cursor_key
from rthub_lms.grants import Matcher

_ids = itertools.count(1)


class FrameWriter(Protocol):
    """A synchronous way to put frames on one socket (`hub.delivery.websocket.writer`)."""

    @property
    def ready(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    async def writable(self) -> None: ...

    def write(self, frames: Sequence[Frame]) -> None: ...


SendText = Callable[[str], Awaitable[None]]


class EndOfTick:
    """Connections with frames taken during this event-loop tick, flushed together at its end.

    One loop callback per tick for all of them, instead of one per connection. Each event loop (each
    app) has its own (`Fanout.end_of_tick`). It also tells a burst: when the fan-out takes a second
    entry before the loop has run again, entries were waiting (the hub is behind), and from then to
    the end of the tick frames queue instead of being written at once, so each socket gets one
    write for all of its frames of the tick, not one per frame. `entries` counts the tick's entries,
    by which the fan-out sizes its slices (`Fanout.run`).
    """

    __slots__ = ("_due", "_scheduled", "behind", "burst", "entries")

    def __init__(self) -> None:
        self._due: list[Connection] = []
        self._scheduled = False
        self.entries = 0  # entries the fan-out took since the loop last ran
        self.burst = False
        self.behind = False

    def entry(self) -> None:
        """Note that the fan-out is taking an entry now."""
        self.entries += 1
        if self.entries > 1:
            self.burst = True
        else:
            self._schedule()

    def fall_behind(self) -> None:
        """Note that the fan-out yielded in the middle of a backlog and goes on with it: `behind`
        stays true until the loop runs again without the fan-out's yield (its feed waited)."""
        self.behind = True
        self._schedule()

    def add(self, conn: Connection) -> None:
        self._due.append(conn)
        self._schedule()

    def _schedule(self) -> None:
        """Flush at the end of this tick (once, however often it is asked)."""
        if self._scheduled:
            return
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self.entries = 0
        self.burst = False
        self.behind = False
        due, self._due = self._due, []
        for conn in due:
            conn.flush()


@dataclass(eq=False)
class Connection:
    identity: ClientIdentity
    grant: Matcher
    queue_size: int = 1024
    grace: float = 2.0
    end_of_tick: EndOfTick = field(default_factory=EndOfTick)
    id: int = field(default_factory=lambda: next(_ids))
    matcher: Matcher = field(init=False)
    group: tuple[str, str] = field(init=False)  # (translator, actor space): whose frames it shares
    pending: deque[Frame] = field(default_factory=deque)
    last_cursor: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    on_close: Callable[[], None] | None = None
    on_sent: Callable[[Sequence[Frame]], None] | None = None
    resuming: bool = False
    held_drops: int = 0  # held live frames dropped during a catch-up, which must then read past them
    _held: list[Frame] | None = field(default_factory=list)
    _queued_up_to: tuple[int, int] = (-1, -1)
    _queued_cursor: str | None = None
    # Every frame the matcher wanted with a cursor in (_covered_after, _queued_up_to] has been queued.
    _covered_after: tuple[int, int] | None = None
    _slow: bool = False
    _writer: FrameWriter | None = None
    _send_text: SendText | None = None
    _flush_due: bool = False
    _drain: asyncio.Task[None] | None = None
    _room: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.matcher = self.grant
        identity = self.identity
        self.group = (identity.translator, actor_space(identity.consumer_type, identity.translator, identity.actor))

    def start(self, writer: FrameWriter | None, send_text: SendText) -> None:
        """Begin sending (after the `welcome` frame): through `writer` when the server offers one."""
        self._writer = writer
        self._send_text = send_text
        if self.pending:
            self._schedule_flush()

    def stop(self) -> None:
        """Stop sending: the transport is closing."""
        if self._drain is not None:
            self._drain.cancel()

    def offer(self, frame: Frame) -> None:
        """Take a frame for sending, or start the slow-consumer countdown when there is no room.

        Frames at or below the highest cursor already queued are ignored: a live frame that was
        rendered while the catch-up overtook it must not arrive twice or out of order.
        """
        if self._slow or self.close_code is not None:
            return
        if self._held is not None:
            if len(self._held) < self.queue_size:
                self._held.append(frame)
                return
            if self.resuming:  # the catch-up reads these from the stream anyway (`Fanout.resume`)
                self.held_drops += 1
                self._held.clear()
                self._held.append(frame)
                return
            self.release_live()  # the client is slow to say what it wants: go live rather than drop
        order = frame.order
        if order is not None and order <= self._queued_up_to:
            return
        pending = self.pending
        if len(pending) >= self.queue_size:
            self._slow = True
            asyncio.get_running_loop().call_later(
                self.grace, self.close, CloseCode.SLOW_CONSUMER, "slow consumer: send queue full"
            )
            return
        if order is not None:
            if self._covered_after is None:
                self._covered_after = (order[0], order[1] - 1)
            self._queued_up_to = order
            self._queued_cursor = frame.cursor
        writer = self._writer
        if pending or self._drain is not None or writer is None or self.end_of_tick.burst or not writer.ready:
            self._take(frame)
            return
        # Nothing waits before it, the writer is ready and the fan-out is not in a burst: write it
        # now (a catch-up queues its frames, so that a page goes out in one write).
        single = (frame,)
        writer.write(single)
        self._delivered(single)

    @property
    def holding(self) -> bool:
        """True until live frames are released: a resume is only possible before that."""
        return self._held is not None

    def begin_resume(self, after: str) -> tuple[str, tuple[int, int, int, int] | None]:
        """Hold live frames for a catch-up of what follows `after` (the client has everything up to it).

        Returns the cursor to read the stream from, and the range of cursors (low, high] already
        queued that the catch-up must skip, when it has to go back before them. That happens only
        for a `resume_from` that arrives after live frames went out: the missed, older events then
        follow the newer ones already sent.
        """
        key = cursor_key(after)
        if self._held is None:
            self._held = []
        self.resuming = True
        covered, queued = self._covered_after, self._queued_up_to
        if covered is None or key >= covered:
            start = after if key >= queued or self._queued_cursor is None else self._queued_cursor
            skip = None
        else:
            start, skip = after, (*covered, *queued)
        self._covered_after = key if covered is None else min(key, covered)
        self._queued_up_to = max(key, queued)
        if self._queued_up_to == key:
            self._queued_cursor = after
        return start, skip

    async def put_resumed(self, frame: Frame) -> None:
        """Queue a resumed frame, waiting for room: resume runs at the client's pace. A client that
        takes nothing for `grace` seconds is closed with 4008, as a slow consumer of live frames is."""
        while len(self.pending) >= self.queue_size:
            if self.close_code is not None:
                return
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self.grace)
            except TimeoutError:
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue full")
                return
        self._take(frame)
        if frame.order is not None and frame.order > self._queued_up_to:
            self._queued_up_to = frame.order
            self._queued_cursor = frame.cursor

    def release_live(self) -> None:
        """Queue the held live frames that the catch-up did not cover and the matcher still wants; go live."""
        self.resuming = False
        held, self._held = self._held or [], None
        for frame in held:
            if frame.facts is None or self.matcher.matches(frame.facts):
                self.offer(frame)

    def _take(self, frame: Frame) -> None:
        self.pending.append(frame)
        if not self._flush_due:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_due = True
        self.end_of_tick.add(self)

    def flush(self) -> None:
        """End of the tick: write everything pending in one go, or leave it to the drain task."""
        self._flush_due = False
        if self.close_code is not None or self._send_text is None or self._drain is not None:
            return
        writer = self._writer
        if writer is not None and writer.ready:
            self._write_pending(writer)
        elif self.pending:
            self._drain = asyncio.get_running_loop().create_task(self._drain_pending())

    def _write_pending(self, writer: FrameWriter) -> None:
        frames = list(self.pending)
        self.pending.clear()
        writer.write(frames)
        self._delivered(frames)

    async def _drain_pending(self) -> None:
        """Send what is pending while the socket is slow, or under a server without a writer."""
        try:
            while self.pending and self.close_code is None:
                writer = self._writer
                if writer is not None:
                    await writer.writable()
                    if writer.closed:
                        return
                    self._write_pending(writer)
                else:
                    assert self._send_text is not None
                    frame = self.pending[0]
                    await self._send_text(frame.text)
                    self.pending.popleft()
                    self._delivered((frame,))
        except Exception as exc:  # the socket is gone: the reader sees the disconnect
            self.close(CloseCode.SEND_FAILED, f"send failed: {type(exc).__name__}")
        finally:
            self._drain = None

    def _delivered(self, frames: Sequence[Frame]) -> None:
        for frame in reversed(frames):
            if frame.cursor is not None:
                self.last_cursor = frame.cursor
                break
        if self._room is not None:
            self._room.set()
        if self.on_sent is not None:
            self.on_sent(frames)

    def close(self, code: int, reason: str) -> None:
        """Ask the transport to close this connection with `code` (first request wins)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        if self.on_close is not None:
            self.on_close()
