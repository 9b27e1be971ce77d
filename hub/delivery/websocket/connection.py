"""One live subscriber: who it is, what it may see, and its bounded queue of encoded frames.

The connection knows nothing about WebSockets; the transport drains `queue` and honours `close`.
A new connection holds its live frames until the client has said what it wants (a `subscribe`
frame, or the subscribe window passing), so a `resume_from` catch-up can go first without a gap or a
duplicate at the switch-over.
Backpressure rule: when the queue is full the connection stops taking frames, keeps sending what
it already holds for `grace` seconds, then asks to be closed with 4008. Its last delivered cursor
precedes every frame it did not take, so a resume loses nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from auth.identity import ClientIdentity
from hub.ingest import cursor_key
from rthub_lms.grants import EventFacts, Matcher

CLOSE_SLOW_CONSUMER = 4008
CLOSE_SERVICE_RESTART = 1012

_ids = itertools.count(1)


@dataclass(slots=True)
class Frame:
    """Encoded text ready to send; `cursor` is None for control frames such as `gap`."""

    cursor: str | None
    text: str
    facts: EventFacts | None = None
    order: tuple[int, int] | None = field(init=False)

    def __post_init__(self) -> None:
        self.order = cursor_key(self.cursor) if self.cursor is not None else None


@dataclass(eq=False)
class Connection:
    identity: ClientIdentity
    grant: Matcher
    queue_size: int = 1024
    grace: float = 2.0
    id: int = field(default_factory=lambda: next(_ids))
    matcher: Matcher = field(init=False)
    queue: asyncio.Queue[Frame] = field(init=False)
    last_cursor: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    on_close: Callable[[], None] | None = None
    _held: list[Frame] | None = field(default_factory=list)
    _queued_up_to: tuple[int, int] = (-1, -1)
    _slow: bool = False

    def __post_init__(self) -> None:
        self.matcher = self.grant
        self.queue = asyncio.Queue(self.queue_size)

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
        elif frame.order is not None and frame.order <= self._queued_up_to:
            return
        else:
            try:
                self.queue.put_nowait(frame)
            except asyncio.QueueFull:
                pass
            else:
                if frame.order is not None:
                    self._queued_up_to = frame.order
                return
        self._slow = True
        asyncio.get_running_loop().call_later(
            self.grace, self.close, CLOSE_SLOW_CONSUMER, "slow consumer: send queue full"
        )

    @property
    def holding(self) -> bool:
        """True until live frames are released: a resume is only possible before that."""
        return self._held is not None

    async def put_resumed(self, frame: Frame) -> None:
        """Queue a resumed frame, waiting for room: resume runs at the client's pace."""
        await self.queue.put(frame)
        if frame.order is not None:
            self._queued_up_to = frame.order

    def release_live(self) -> None:
        """Queue the held live frames that the catch-up did not cover and the matcher still wants; go live."""
        held, self._held = self._held or [], None
        for frame in held:
            if frame.facts is None or self.matcher.matches(frame.facts):
                self.offer(frame)

    def close(self, code: int, reason: str) -> None:
        """Ask the transport to close this connection with `code` (first request wins)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        if self.on_close is not None:
            self.on_close()
