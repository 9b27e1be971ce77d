"""An in-process broker for `rthub demo` on a machine without redis-server.

It keeps a bounded history and hands live entries to each follower through its own bounded queue;
a follower that falls behind loses its feed (its iterator ends) rather than growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

from hub.ingest import Entry, cursor_key
from rthub_lms.events import Event

FOLLOWER_QUEUE = 10_000


class MemoryBroker:
    def __init__(self, maxlen: int = 100_000) -> None:
        self._entries: deque[Entry] = deque(maxlen=maxlen)
        self._followers: set[asyncio.Queue[Entry | None]] = set()
        self._last = (0, 0)

    async def publish(self, event: Event) -> str:
        millis = int(time.time() * 1000)
        last_millis, last_sequence = self._last
        self._last = (millis, 0) if millis > last_millis else (last_millis, last_sequence + 1)
        entry = Entry(f"{self._last[0]}-{self._last[1]}", event)
        self._entries.append(entry)
        for follower in list(self._followers):
            try:
                follower.put_nowait(entry)
            except asyncio.QueueFull:
                self._followers.discard(follower)
                follower.get_nowait()
                follower.put_nowait(None)
        return entry.cursor

    async def live(self) -> AsyncIterator[Entry]:
        queue: asyncio.Queue[Entry | None] = asyncio.Queue(FOLLOWER_QUEUE)
        self._followers.add(queue)
        try:
            while (entry := await queue.get()) is not None:
                yield entry
        finally:
            self._followers.discard(queue)

    async def history(self, after: str, limit: int) -> list[Entry]:
        start = cursor_key(after)
        return [entry for entry in self._entries if cursor_key(entry.cursor) > start][:limit]

    async def oldest(self) -> str | None:
        return self._entries[0].cursor if self._entries else None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        for follower in list(self._followers):
            follower.put_nowait(None)
