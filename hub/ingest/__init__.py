"""Ingest, the first stage of the pipeline: the broker interface (publish an event, follow the live
feed, read history by cursor) and the dead letters of entries the hub cannot carry.

The engine behind it is `hub.ingest.redis` (a capped stream plus pub/sub), everywhere: the demo
and the tests run a real redis-server too. Like Centrifugo's split, everything above this line
talks only to `Broker`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol

from rthub_lms.events import Event


class Entry(NamedTuple):
    """One event in stream order; `cursor` is its opaque, increasing position."""

    cursor: str
    event: Event


class BadEntry(NamedTuple):
    """Something on the stream or live channel that is not an event the hub can carry.

    A buggy or hostile producer can write anything there; the hub dead-letters it and moves on.
    `cursor` is None when the entry had no usable one (a live message with a mangled cursor).
    `reason` is a short code (for counting), `detail` says what exactly, `raw` is what was read.
    """

    cursor: str | None
    reason: str
    detail: str
    raw: bytes


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached right now; callers retry or report not-ready."""


class History(Protocol):
    """The part of a broker a catch-up reads (`Broker`, or `history.SharedHistory` in front of one)."""

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]: ...

    async def oldest(self) -> str | None: ...


class Broker(Protocol):
    async def publish(self, event: Event) -> str:
        """Append to history and publish live, atomically; return the cursor."""
        ...

    def live(self, after: str | None = None) -> AsyncIterator[Entry | BadEntry]:
        """Entries published from now on (with `after`: from the one after it), in order, for as
        long as the caller iterates."""
        ...

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]:
        """Up to `limit` entries strictly after `after`, in order."""
        ...

    async def oldest(self) -> str | None:
        """The oldest cursor still retained, or None when history is empty."""
        ...

    async def ping(self) -> bool:
        """True when the broker answers."""
        ...

    async def close(self) -> None: ...


_CURSOR = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_MAX_PART = 2**64 - 1


# `cursor_key`'s ordering for Lua scripts: `older(a, b)` is true when cursor a comes before b.
LUA_OLDER = """
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-?(%d*)$')
  local bm, bs = string.match(b, '^(%d+)-?(%d*)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return (tonumber(as) or 0) < (tonumber(bs) or 0)
end
"""


def cursor_key(cursor: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence); anything Redis would not take raises ValueError."""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise ValueError(f"not a stream cursor: {str(cursor)[:40]!r}")
    millis, sequence = int(match[1]), int(match[2] or 0)
    if millis > _MAX_PART or sequence > _MAX_PART:
        raise ValueError(f"stream cursor out of range: {cursor[:40]!r}")
    return millis, sequence
