"""The production broker: a capped Redis stream for history, Redis pub/sub for the live feed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from redis.exceptions import RedisError

from hub.config import Settings
from hub.ingest import BadEntry, BrokerUnavailable, Entry, Page, cursor_key, decode_event, lost_after
from hub.ingest.subscription import Subscription
from hub.redis import Backoff, Client, text
from rthub_lms.events import Event
from rthub_lms.keys import live_channel, publish_script, stream_key

log = logging.getLogger("rthub.broker")

HISTORY_PAGE = 1000
# A live cursor this far ahead of the last one seen is checked against the stream before it is trusted:
# one that no XADD produced would make every real event after it look like an old duplicate.
# Redis's clock makes the ids, so the hub's own clock is never part of the judgement.
FUTURE_CURSOR_MS = 60_000


def decode_live(message: bytes) -> Entry | BadEntry:
    """Split a live message `cursor\\nevent-json` into an Entry, or say why it is not one."""
    raw_cursor, _, payload = message.partition(b"\n")
    try:
        cursor = raw_cursor.decode("ascii")
        cursor_key(cursor)
    except (UnicodeDecodeError, ValueError):
        return BadEntry(None, "bad_cursor", f"unusable cursor {raw_cursor[:40]!r}", message)
    return decode_event(cursor, payload)


class RedisBroker:
    def __init__(self, client: Client, settings: Settings, *, sharded: bool = False) -> None:
        self._client = client
        self._settings = settings
        self._stream = stream_key(settings)
        self._channel = live_channel(settings)
        self._sharded = sharded
        self._publish = client.register_script(publish_script(sharded))
        self.reconnects = 0

    async def publish(self, event: Event) -> str:
        try:
            cursor = await self._publish(
                keys=[self._stream, self._channel],
                args=[self._settings.stream_maxlen, orjson.dumps(event)],
            )
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return cursor.decode() if isinstance(cursor, bytes) else str(cursor)

    async def live(self, after: str | None = None) -> AsyncIterator[Entry | BadEntry]:
        """Follow the live channel in order, without gaps, across Redis outages; with `after`, begin
        with the entries that follow it.

        Pub/sub drops what is published while we are disconnected, so after every subscribe the
        entries since the last one seen are read back from the stream before live ones resume. "From
        now on" starts at the stream's newest entry, noted before the first subscribe: a feed that
        loses Redis before its first event reads back from there too.
        """
        last: str | None = after
        backoff = Backoff()
        while True:
            subscription = None
            try:
                if last is None:
                    last = await self.tip() or "0-0"
                subscription = await Subscription.open(self._client, self._channel, self._sharded)
                async for entry in self._since(last):
                    last = entry.cursor
                    yield entry
                last_key = cursor_key(last)
                backoff.reset()
                while True:
                    for message in await subscription.messages():
                        entry = decode_live(message)
                        if entry.cursor is None:
                            yield entry
                            continue
                        key = cursor_key(entry.cursor)
                        if key > last_key:
                            if key[0] > last_key[0] + FUTURE_CURSOR_MS and not await self._plausible(entry.cursor):
                                detail = f"cursor {entry.cursor[:40]} is ahead of the stream"
                                yield BadEntry(None, "bad_cursor", detail, message)
                                continue
                            last, last_key = entry.cursor, key
                            yield entry
            except (RedisError, OSError) as exc:
                delay = backoff.next_delay()
                self.reconnects += 1
                log.warning("live feed lost (%s); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                if subscription is not None:
                    await subscription.close()

    async def _plausible(self, cursor: str) -> bool:
        """True when `cursor` is not past the stream's newest entry (asked only at start or after an
        idle minute, for a cursor that far ahead of the last one seen: the live path has no round trip)."""
        newest = await self.tip()
        return newest is not None and cursor_key(cursor) <= cursor_key(newest)

    async def _since(self, after: str) -> AsyncIterator[Entry | BadEntry]:
        while batch := await self.history(after, HISTORY_PAGE):
            for entry in batch:
                yield entry
            after = batch[-1].cursor or after

    async def history(self, after: str, limit: int) -> list[Entry | BadEntry]:
        try:
            rows = await self._client.xrange(self._stream, min=f"({after}", count=limit)
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return [decode_event(cursor.decode(), fields.get(b"e")) for cursor, fields in rows]

    async def oldest(self) -> str | None:
        try:
            rows = await self._client.xrange(self._stream, count=1)
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return rows[0][0].decode() if rows else None

    async def page(self, after: str, limit: int) -> Page:
        """XINFO and XRANGE in one MULTI, so the page and the retention check see the same stream.
        Redis 7 says whether anything was ever trimmed (`entries-added` beyond the length); on 6.2
        an oldest entry past `after` is taken as trimmed."""
        pipe = self._client.pipeline(transaction=True)
        pipe.xinfo_stream(self._stream)
        pipe.xrange(self._stream, min=f"({after}", count=limit)
        try:
            info, rows = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        if isinstance(rows, Exception):
            raise BrokerUnavailable(str(rows)) from rows
        lost = None
        if isinstance(info, dict) and info.get("first-entry"):  # not a dict: no stream yet
            added = info.get("entries-added")
            trimmed = added is None or int(added) > info["length"]
            lost = lost_after(after, text(info["first-entry"][0]), trimmed)
        entries = [decode_event(text(cursor), fields.get(b"e")) for cursor, fields in rows]
        return Page(entries, lost)

    async def tip(self) -> str | None:
        try:
            rows = await self._client.xrevrange(self._stream, count=1)
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return text(rows[0][0]) if rows else None

    async def wait_after(self, cursor: str, timeout: float) -> None:
        try:
            await self._client.xread({self._stream: cursor}, count=1, block=max(1, int(timeout * 1000)))
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()
