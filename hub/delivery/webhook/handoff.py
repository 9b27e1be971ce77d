"""Ordered handoff for websocket+webhook clients: which queued events the client's sockets cover.

The router queues every entitled event in the outbox whether a socket is live or not, so the
outbox is always complete and in cursor order. Before delivering, the worker asks presence (one
script) for the open cover (a socket took over at that cursor), the newest cursor every live socket
has certainly been sent, and the closed ranges of past socket sessions. Queued events inside a closed
range, or covered by a live socket, are dropped (the socket had them); events after an open cover
are held; the rest is delivered in order. Nothing is ever re-queued out of order, and an event is
delivered twice only inside the margin at the end of a socket session (same `webhook-id`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from hub.config import Settings
from hub.control.presence import COVERS_SCRIPT, margin_ms
from hub.delivery.webhook.outbox import Item
from hub.ingest import cursor_key
from hub.redis import text
from rthub_lms import keys

Order = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Split:
    """One look at the queue head: what to drop (sockets had it), what to deliver, whether to hold the rest."""

    drop: list[Item]
    deliver: list[Item]
    held: bool
    finished_ranges: list[str]


@dataclass(frozen=True, slots=True)
class Covers:
    open_from: Order | None
    safe: Order | None
    ranges: list[tuple[str, Order, Order]]

    def split(self, items: list[Item]) -> Split:
        """Walk the queue head in order: drop covered events, stop at the first one a live socket owns."""
        drop: list[Item] = []
        deliver: list[Item] = []
        held = False
        for item in items:
            at = cursor_key(item.cursor)
            if any(low < at <= high for _, low, high in self.ranges):
                drop.append(item)
            elif self.open_from is not None and at > self.open_from:
                if self.safe is not None and at <= self.safe:
                    drop.append(item)
                else:
                    held = True
                    break
            else:
                deliver.append(item)
        newest = cursor_key(items[-1].cursor) if items else None
        finished = [raw for raw, _, high in self.ranges if newest is not None and newest > high]
        return Split(drop, deliver, held, finished)


class Handoff:
    """Reads and tidies one client's socket covers."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, client_id: str) -> None:
        self._redis = redis
        self._margin_ms = margin_ms(settings)
        self._keys = [
            keys.presence(settings, client_id), keys.presence_state(settings, client_id),
            keys.handoff(settings, client_id),
        ]
        self._covers = redis.register_script(COVERS_SCRIPT)

    async def covers(self) -> Covers:
        reply = await self._covers(keys=self._keys, args=[self._margin_ms])
        open_from, safe, *ranges = (text(value) for value in reply)
        parsed = []
        for raw in ranges:
            low, _, high = raw.partition(",")
            try:
                parsed.append((raw, cursor_key(low), cursor_key(high)))
            except ValueError:  # not a range (written by an older hub): nothing to skip
                await self.forget([raw])
        return Covers(cursor_key(open_from) if open_from else None, cursor_key(safe) if safe else None, parsed)

    async def forget(self, ranges: list[str]) -> None:
        """Ranges the outbox has moved past (a later event is queued, so theirs were all dropped)."""
        for raw in ranges:
            await self._redis.lrem(self._keys[2], 1, raw)
