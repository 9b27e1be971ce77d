"""Ingest, the first stage of the pipeline: the broker interface (publish an event, follow the live
feed, read history by cursor, page through it noticing what retention dropped) and the dead letters
of entries the hub cannot carry.

The hub's engine is `hub.ingest.redis` (a capped stream plus pub/sub), everywhere: the demo runs a
real redis-server too. `hub.ingest.memory` holds history in the process, for tests of what reads
it. Like Centrifugo's split, everything above this line talks only to `Broker`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import NamedTuple, Protocol

import orjson

from rthub_lms.events import MAX_EVENT_BYTES, Event, MalformedEvent, check_normalised


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


class Page(NamedTuple):
    """A page of history and what retention dropped before it.

    `lost` is set when entries strictly after the cursor read from left history before they were
    read: everything in (after, lost] is gone, and `entries` are the retained ones after that.
    """

    entries: list[Entry | BadEntry]
    lost: str | None


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

    async def page(self, after: str, limit: int) -> Page:
        """Up to `limit` entries strictly after `after`, read in one step with the check of what
        retention dropped after `after` (see `lost_after`), so both see the same history."""
        ...

    async def tip(self) -> str | None:
        """The newest cursor, or None when history is empty."""
        ...

    async def wait_after(self, cursor: str, timeout: float) -> None:
        """Return once an entry after `cursor` exists, or after `timeout` seconds."""
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


def lost_after(after: str, first: str | None, trimmed: bool) -> str | None:
    """The newest cursor retention dropped after `after`, given history's oldest retained cursor
    `first` and whether anything was ever trimmed; None when nothing after `after` was lost.

    Retention trims from the head: an oldest entry newer than `after` means the entries between
    were trimmed before they were read. `after` "0-0" means from the start: nothing counts as lost.
    """
    if after == "0-0" or first is None or not trimmed or cursor_key(first) <= cursor_key(after):
        return None
    return predecessor(first)


def predecessor(cursor: str) -> str:
    """The cursor just before `cursor` (reading after it starts exactly at `cursor`)."""
    millis, sequence = cursor_key(cursor)
    if sequence:
        return f"{millis}-{sequence - 1}"
    return f"{millis - 1}-{_MAX_PART}" if millis else "0-0"


def decode_event(cursor: str, payload: bytes | None) -> Entry | BadEntry:
    """The stored JSON of one event, checked to be what the publisher writes."""
    if payload is None:
        return BadEntry(cursor, "missing_field", "stream entry has no `e` field", b"")
    if len(payload) > MAX_EVENT_BYTES:
        return BadEntry(cursor, "oversize", f"{len(payload)} bytes (limit {MAX_EVENT_BYTES})", payload)
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_json"
        if "UTF-8" in str(exc) or "surrogate" in str(exc):
            reason = "invalid_utf8"
        elif "depth limit" in str(exc):
            reason = "too_deep"
        return BadEntry(cursor, reason, str(exc)[:200], payload)
    try:
        return Entry(cursor, check_normalised(value))
    except MalformedEvent as exc:
        return BadEntry(cursor, "wrong_shape", str(exc)[:200], payload)


def cursor_key(cursor: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence); anything Redis would not take raises ValueError.

    One event's cursor is compared by the live feed, the render stage's switch, its frame and every
    catch-up: parsed once per cursor (`_parsed` remembers the most recent), not once per use.
    """
    if not isinstance(cursor, str):
        raise ValueError(f"not a stream cursor: {str(cursor)[:40]!r}")
    return _parsed(cursor)


@lru_cache(maxsize=16_384)
def _parsed(cursor: str) -> tuple[int, int]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ValueError(f"not a stream cursor: {str(cursor)[:40]!r}")
    millis, sequence = int(match[1]), int(match[2] or 0)
    if millis > _MAX_PART or sequence > _MAX_PART:
        raise ValueError(f"stream cursor out of range: {cursor[:40]!r}")
    return millis, sequence
