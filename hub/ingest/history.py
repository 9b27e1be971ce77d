"""Shared history reads for resume: many sockets catching up over the same stretch read it once.

After a hub restart every client reconnects with a cursor from the last seconds before it; each
catch-up would read and decode the same backlog from Redis. `SharedHistory` keeps what it read as
contiguous runs — a run holds every entry in the stream interval (after, last] — and answers
`history(after, limit)` from a run that covers `after`, reading from the broker only past a run's end
(and extending that run) or where no run reaches. Concurrent reads of the same page wait for one
request. Stream entries never change, so a cached entry is never stale; retention trimming only
means the cache may still answer for entries Redis has dropped, which is what a catch-up wants.
At most `max_entries` are kept; the least recently used runs go first.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

from hub.ingest import BadEntry, Broker, Entry, cursor_key
from hub.singleflight import SingleFlight

MAX_ENTRIES = 10_000

Key = tuple[int, int]


@dataclass(eq=False)
class _Run:
    after: Key
    entries: list[Entry | BadEntry] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)

    @property
    def last(self) -> Key:
        return self.keys[-1] if self.keys else self.after

    def covers(self, key: Key) -> bool:
        return self.after <= key <= self.last


class SharedHistory:
    def __init__(self, broker: Broker, max_entries: int = MAX_ENTRIES) -> None:
        self._broker = broker
        self._max_entries = max_entries
        self._runs: list[_Run] = []  # most recently used last
        self._reading: SingleFlight[Key, list[Entry | BadEntry]] = SingleFlight()
        self.counts: Counter[str] = Counter()

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]:
        """Up to `limit` entries strictly after `after`, in order (as `Broker.history`)."""
        key = cursor_key(after)
        run = self._covering(key)
        if run is not None and key < run.last:
            self.counts["history_cached"] += 1
            start = bisect_right(run.keys, key)
            return run.entries[start:start + limit]

        async def read_and_keep() -> list[Entry | BadEntry]:
            page = await self._broker.history(after, limit)
            self.counts["history_read"] += 1
            if page:
                self._keep(key, page)
            return page

        page, joined = await self._reading.run(key, read_and_keep)
        if joined:
            self.counts["history_joined"] += 1
        return page

    async def oldest(self) -> str | None:
        """The oldest cursor Redis still retains (never cached: retention moves it)."""
        return await self._broker.oldest()

    def _keep(self, after: Key, page: list[Entry | BadEntry]) -> None:
        """Add a page read after `after` to the run ending there, or start a run with it."""
        run = self._covering(after)
        if run is None or run.last != after:
            run = _Run(after)
            self._runs.append(run)
        for entry in page:
            entry_key = cursor_key(entry.cursor) if entry.cursor is not None else run.last
            if entry_key > run.last:
                run.entries.append(entry)
                run.keys.append(entry_key)
        self._evict()

    def _covering(self, key: Key) -> _Run | None:
        for index in range(len(self._runs) - 1, -1, -1):
            run = self._runs[index]
            if run.covers(key):
                if index != len(self._runs) - 1:
                    self._runs.append(self._runs.pop(index))
                return run
        return None

    def _evict(self) -> None:
        total = sum(len(run.entries) for run in self._runs)
        while total > self._max_entries and len(self._runs) > 1:
            total -= len(self._runs.pop(0).entries)
        if total > self._max_entries:
            run = self._runs[0]
            drop = total - self._max_entries
            run.after = run.keys[drop - 1]
            del run.entries[:drop], run.keys[:drop]
