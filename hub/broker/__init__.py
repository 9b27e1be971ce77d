"""The broker interface: publish an event, follow the live feed, read history by cursor.

Engines behind it: `hub.broker.redis` (production: a capped stream plus pub/sub) and
`hub.broker.memory` (the demo on a machine without redis-server). Like Centrifugo's split,
everything above this line talks only to `Broker`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol

from hub.events import Event


class Entry(NamedTuple):
    """One event in stream order; `cursor` is its opaque, increasing position."""

    cursor: str
    event: Event


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached right now; callers retry or report not-ready."""


class Broker(Protocol):
    async def publish(self, event: Event) -> str:
        """Append to history and publish live, atomically; return the cursor."""
        ...

    def live(self) -> AsyncIterator[Entry]:
        """Entries published from now on, in order, for as long as the caller iterates."""
        ...

    async def history(self, after: str, limit: int) -> list[Entry]:
        """Up to `limit` entries strictly after `after`, in order."""
        ...

    async def oldest(self) -> str | None:
        """The oldest cursor still retained, or None when history is empty."""
        ...

    async def ping(self) -> bool:
        """True when the broker answers."""
        ...

    async def close(self) -> None: ...


def cursor_key(cursor: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence); a malformed cursor raises ValueError."""
    millis, _, sequence = cursor.partition("-")
    return int(millis), int(sequence or 0)
