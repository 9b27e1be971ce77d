"""An in-process engine: history as a list capped like the stream, in one process only.

For tests of what reads history (the webhook router, catch-ups) without a Redis stream. Cursors are
made like Redis's stream ids (milliseconds-sequence, strictly increasing); stored entries are the
event's JSON, so `append` can also store what a buggy producer would write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_right
from collections.abc import AsyncIterator

import orjson

from hub.ingest import BadEntry, Entry, Page, cursor_key, decode_event, lost_after
from rthub_lms.events import Event

MAXLEN = 10_000
LIVE_WAIT = 1.0


class MemoryBroker:
    def __init__(self, maxlen: int = MAXLEN) -> None:
        self.maxlen = maxlen
        self._rows: list[tuple[tuple[int, int], str, bytes]] = []  # (cursor key, cursor, stored JSON)
        self._added = 0
        self._appended = asyncio.Condition()

    async def publish(self, event: Event) -> str:
        return await self.append(orjson.dumps(event))

    async def append(self, payload: bytes) -> str:
        """Store `payload` as the next entry, trimming the oldest beyond `maxlen`; returns its cursor."""
        millis = int(time.time() * 1000)
        last = self._rows[-1][0] if self._rows else (0, 0)
        key = (millis, 0) if millis > last[0] else (last[0], last[1] + 1)
        cursor = f"{key[0]}-{key[1]}"
        self._rows.append((key, cursor, payload))
        self._added += 1
        del self._rows[: max(0, len(self._rows) - self.maxlen)]
        async with self._appended:
            self._appended.notify_all()
        return cursor

    async def live(self, after: str | None = None) -> AsyncIterator[Entry | BadEntry]:
        last = after if after is not None else (await self.tip() or "0-0")
        while True:
            batch = await self.history(last, MAXLEN)
            for entry in batch:
                yield entry
            if batch:
                last = batch[-1].cursor or last
            else:
                await self.wait_after(last, LIVE_WAIT)

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]:
        start = bisect_right(self._rows, cursor_key(after), key=lambda row: row[0])
        return [decode_event(cursor, payload) for _, cursor, payload in self._rows[start:start + limit]]

    async def oldest(self) -> str | None:
        return self._rows[0][1] if self._rows else None

    async def page(self, after: str, limit: int) -> Page:
        trimmed = self._added > len(self._rows)
        return Page(await self.history(after, limit), lost_after(after, await self.oldest(), trimmed))

    async def tip(self) -> str | None:
        return self._rows[-1][1] if self._rows else None

    async def wait_after(self, cursor: str, timeout: float) -> None:
        key = cursor_key(cursor)
        async with self._appended:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._appended.wait_for(lambda: bool(self._rows) and self._rows[-1][0] > key)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
