"""A worker's live feed: bundles from the render stage when it is there, else the broker's live feed.

Both are ordered and gapless from where they start, so switching never loses or repeats an event:
- stage lost: follow `broker.live(after=last)`, which reads back from the stream what came since;
- stage back: keep following the broker, with the stage's first bundle (cursor C0) in hand, until the
  broker yields a cursor at or past C0 — nothing between the last one delivered and C0 is then left
  — and continue with the stage's bundles from C0 on. Anything at or below the last cursor
  delivered is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from hub.fanout.stage.bundle import MAX_BUNDLE, SIZE, BadBundle, Bundle, decode
from hub.ingest import BadEntry, Broker, Entry, cursor_key

log = logging.getLogger("rthub.stage.feed")

RETRY_EVERY = 1.0

Item = Entry | BadEntry | Bundle


class StageLink:
    """One connection to the render stage."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def next(self) -> Bundle:
        """The next bundle; raises `ConnectionError` or `BadBundle` when the link is unusable."""
        try:
            (size,) = SIZE.unpack(await self._reader.readexactly(SIZE.size))
            if not SIZE.size <= size <= MAX_BUNDLE:
                raise BadBundle(f"bundle of {size} bytes")
            return decode(await self._reader.readexactly(size))
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the render stage went away") from exc

    def close(self) -> None:
        self._writer.close()


async def connect(path: str) -> StageLink:
    """Connect to the stage, retrying every `RETRY_EVERY` seconds until it answers."""
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_BUNDLE)
        except OSError:
            await asyncio.sleep(RETRY_EVERY)
            continue
        return StageLink(reader, writer)


async def _first(path: str) -> tuple[StageLink, Bundle]:
    """A link and its first bundle; a link that fails before one arrives is replaced."""
    while True:
        link = await connect(path)
        try:
            return link, await link.next()
        except (OSError, BadBundle) as exc:
            link.close()
            log.warning("render stage link failed before its first bundle: %s", exc)
            await asyncio.sleep(RETRY_EVERY)


def _after(cursor: str | None, last: str | None) -> bool:
    return cursor is not None and (last is None or cursor_key(cursor) > cursor_key(last))


async def follow(broker: Broker, stage_socket: str, after: str | None = None) -> AsyncIterator[Item]:
    """Every entry from now on (with `after`: from the one after it), in order, each once: through the
    stage at `stage_socket` when it is up."""
    last: str | None = after
    while True:
        switch: tuple[StageLink, Bundle] | None = None
        joining = asyncio.create_task(_first(stage_socket))
        local = broker.live(after=last)
        try:
            async for item in local:
                if joining.done():
                    link, first = joining.result()
                    if item.cursor is not None and cursor_key(item.cursor) >= cursor_key(first.cursor):
                        switch = (link, first)
                        break
                if item.cursor is not None:
                    last = item.cursor
                yield item
        finally:
            await local.aclose()
            if switch is None:
                joining.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, BadBundle):
                    link, _ = await joining
                    link.close()
        link, bundle = switch
        log.info("following the render stage from %s", bundle.cursor)
        try:
            while True:
                if _after(bundle.cursor, last):
                    last = bundle.cursor
                    yield bundle
                bundle = await link.next()
        except (OSError, BadBundle) as exc:
            log.warning("render stage lost (%s); following the live feed after %s", exc, last)
        finally:
            link.close()
