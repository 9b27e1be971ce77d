"""Fan-out: one live feed per process, handed to exactly the connections entitled to each event.

The data path for one event: match (grant index) -> anonymise -> translate -> encode -> enqueue.
Everything after matching is done once per (translator, consumer type) group, never per
subscriber: subscribers of one group share the same encoded frame. A connection writes a frame at
once when nothing waits before it on its socket, and otherwise at the end of the event-loop tick
(`Connection`). When entries were waiting (a second one is offered before the loop runs again) the
fan-out is in a burst: frames then wait for the end of the tick, one write per socket for all of
its frames (`EndOfTick`). In a burst the fan-out yields to the loop after a slice of `BURST`
entries; while entries keep waiting after a slice, the next is twice as long (up to `MAX_BURST`, and
to half a socket's send queue), so a hub that stays behind writes each socket once per many frames,
and a passing backlog holds no frame longer than a short slice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import orjson

from hub.anonymise import Anonymiser, NoExternalId
from hub.fanout.frames import GapFrame
from hub.fanout.render import Frame, Renderer
from hub.fanout.stage.bundle import Bundle
from hub.fanout.subscriber import Connection, EndOfTick
from hub.ingest import BadEntry, Entry, History, cursor_key
from hub.ingest.deadletters import DeadLetters, LogDeadLetters
from hub.redis import Backoff, is_transient
from hub.translate import TranslationSettings
from rthub_lms.grants import EventFacts, GrantIndex, Matcher

log = logging.getLogger("rthub.fanout")

RESUME_PAGE = 500

GrantsBefore = Callable[[], Awaitable[Sequence[tuple[str, Matcher]]]]
BURST = 32
MAX_BURST = 256


class Fanout:
    def __init__(
        self, anonymiser: Anonymiser, translation: TranslationSettings, dead_letters: DeadLetters | None = None,
        queue_size: int = 1024,
    ) -> None:
        self.dead_letters = dead_letters or LogDeadLetters()
        # A socket entitled to every event takes a whole slice's frames before it is written to: a slice
        # of at most half its send queue never makes a socket that keeps up look like a slow consumer.
        self._max_burst = max(1, min(MAX_BURST, queue_size // 2))
        self._index = GrantIndex()
        self.connections: dict[int, Connection] = {}
        self.end_of_tick = EndOfTick()  # shared by this process's connections (`Connection.end_of_tick`)
        self.counts: Counter[str] = Counter()
        self.renderer = Renderer(anonymiser, translation, self.counts)
        # Client change notices seen (`hub.control.changes`): a handshake that saw this move while it
        # read the registry checks its client again, since the notice may have missed its socket.
        self.changes_seen = 0
        self._sockets: Counter[str] = Counter()
        # The newest cursor the feed has handed over (or where it started): a socket added now is offered
        # every entry after it, which its `welcome` tells it, so it can resume from there (None: not started).
        self.position: str | None = None

    def add(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self._index.set(conn.id, conn.matcher)
        self._sockets[conn.identity.client_id] += 1

    def sockets_of(self, client_id: str) -> int:
        """How many sockets `client_id` has open on this process."""
        return self._sockets[client_id]

    def update(self, conn: Connection) -> None:
        """Re-index a connection whose matcher changed (a `subscribe` filter)."""
        if conn.id in self.connections:
            self._index.set(conn.id, conn.matcher)

    def remove(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is not None:
            self._index.remove(conn.id)
            self._sockets[conn.identity.client_id] -= 1
            if not self._sockets[conn.identity.client_id]:
                del self._sockets[conn.identity.client_id]

    def close_client(self, client_id: str, code: int, reason: str) -> int:
        """Close every connection of one client; returns how many were closed."""
        targets = [c for c in self.connections.values() if c.identity.client_id == client_id]
        for conn in targets:
            conn.close(code, reason)
        return len(targets)

    def per_client(self) -> Counter[str]:
        return Counter(conn.identity.client_id for conn in self.connections.values())

    async def run(self, feed: AsyncIterator[Entry | BadEntry | Bundle], start: str | None = None) -> None:
        """Pump the live feed (`Broker.live`, or `stage.feed.follow`), which follows the stream after
        `start`, into the connections until cancelled; bad entries are dead-lettered."""
        tick = self.end_of_tick
        first = burst = min(BURST, self._max_burst)
        self.position = start
        async for entry in feed:
            if isinstance(entry, BadEntry):
                tick.entry()
                await self.dead_letters.put(entry)
            else:
                await self._deliver(entry)
            if entry.cursor is not None:
                self.position = entry.cursor
            taken = tick.entries  # entries taken since the loop last ran, this one included
            if taken >= burst:  # let sockets flush and handshakes proceed during a long burst
                burst = min(2 * burst, self._max_burst)
                await asyncio.sleep(0)
                tick.fall_behind()
            elif taken == 1 and not tick.behind:  # the loop ran on its own (the feed waited): caught up
                burst = first

    async def _deliver(self, entry: Entry | Bundle) -> None:
        """Dispatch one entry: a Redis outage is waited out (nothing is lost, and frames already
        queued are not queued twice); any other failure dead-letters the entry and moves on."""
        backoff = Backoff()
        while True:
            try:
                await self.dispatch(entry)
                return
            except Exception as exc:
                if not is_transient(exc):
                    await self._dead_letter(entry, exc)
                    return
                delay = backoff.next_delay()
                self.counts["dispatch_retries"] += 1
                log.warning("waiting for Redis (%s); retrying in %.2fs", exc, delay, extra={"cursor": entry.cursor})
                await asyncio.sleep(delay)

    async def _dead_letter(self, item: Entry | Bundle, exc: Exception) -> None:
        self.counts["dispatch_errors"] += 1
        log.exception("dispatch failed", extra={"cursor": item.cursor})
        entry = item.entry() if isinstance(item, Bundle) else item
        detail = f"{type(exc).__name__}: {exc}"[:200]
        await self.dead_letters.put(BadEntry(entry.cursor, "dispatch_error", detail, _encoded(entry)))

    async def dispatch(self, item: Entry | Bundle) -> None:
        """Offer one entry (or the render stage's bundle of it) to the sockets entitled to it
        (webhook routing follows the stream itself)."""
        self.counts["ingested"] += 1
        self.end_of_tick.entry()
        if isinstance(item, Bundle):
            self.counts["bundled"] += 1
            facts = self.renderer.adopt_facts(item.cursor, item.facts)
        else:
            facts = self.renderer.facts(item)
        keys = self._index.matching(facts)
        if keys:
            await self._offer(item, facts, keys)
        else:
            self.counts["unwanted"] += 1

    async def _offer(self, item: Entry | Bundle, facts: EventFacts, keys: set[int]) -> None:
        groups: dict[tuple[str, str], list[Connection]] = defaultdict(list)
        connections = self.connections
        for key in keys:
            conn = connections[key]
            groups[conn.group].append(conn)
        entry = item if isinstance(item, Entry) else None
        for group, members in groups.items():
            translator, consumer_type = group
            if isinstance(item, Bundle) and group in item.frames:
                frame = self.renderer.adopt(item.cursor, translator, consumer_type, item.frames[group], facts)
            else:  # a group the stage did not render (a client created a moment ago): render it here
                entry = entry or item.entry()
                try:
                    frame = await self.renderer.render(entry, translator, consumer_type, facts)
                except NoExternalId as exc:  # counted by the renderer; the others of the event go on
                    log.warning("not sent to %d socket(s): %s", len(members), exc, extra={"cursor": item.cursor})
                    continue
            if frame is not None:
                for conn in members:
                    conn.offer(frame)

    def last_cursors(self) -> dict[str, str | None]:
        """Per client, the oldest last-sent cursor among its sockets here (for webhook presence)."""
        oldest: dict[str, str | None] = {}
        for conn in self.connections.values():
            client_id, cursor = conn.identity.client_id, conn.last_cursor
            current = oldest.get(client_id)
            if cursor is not None and (current is None or cursor_key(cursor) < cursor_key(current)):
                oldest[client_id] = cursor
        return oldest

    async def resume(
        self, conn: Connection, history: History, after: str, earlier: GrantsBefore | None = None
    ) -> None:
        """Replay what `conn` may see after `after`, then switch it to live with no gap or duplicate.

        `earlier()`: the client's grant changes since `after`, oldest first (the stream's newest cursor
        before the change, the grant until then): an entry published at or before such a cursor is
        replayed only if the grant of its time allowed it too, so a grant widened since is not applied to
        older events. Read after the connection is marked as resuming (`begin_resume`, before any await),
        so a `subscribe` frame handled meanwhile sees the catch-up under way.

        Live frames are held meanwhile (`Connection.begin_resume`); at the switch it skips every frame
        at or below the last cursor replayed, and the replay skips what was already queued. A cursor
        older than retention first gets a `gap` frame naming the oldest retained cursor, then
        everything retained.
        """
        cursor, skip = conn.begin_resume(after)
        try:
            changes = [(cursor_key(upto), grant) for upto, grant in (await earlier() if earlier else ())]
            oldest = await history.oldest()
            if oldest is not None and cursor_key(oldest) > cursor_key(after):
                gap: GapFrame = {"type": "gap", "from": after, "resume_from": oldest}
                await conn.put_resumed(Frame(None, orjson.dumps(gap).decode()))
            while True:
                drops = conn.held_drops
                batch = await history.history(cursor, RESUME_PAGE)
                if not batch:
                    if conn.held_drops == drops:
                        return
                    # Live frames were dropped while this read was on the way: they may have been
                    # appended after Redis answered it, so read again (they are in the stream now).
                    continue
                for entry in batch:
                    if conn.close_code is not None:
                        return
                    if isinstance(entry, BadEntry):  # the live feed dead-letters it
                        continue
                    if skip is not None and skip[:2] < cursor_key(entry.cursor) <= skip[2:]:
                        continue
                    facts = self.renderer.facts(entry)
                    then = _grant_at(changes, cursor_key(entry.cursor)) if changes else None
                    if conn.matcher.matches(facts) and (then is None or then.matches(facts)):
                        try:
                            frame = await self.renderer.render(entry, *conn.group)
                        except NoExternalId as exc:
                            log.warning("not replayed: %s", exc, extra={"cursor": entry.cursor})
                            continue
                        if frame is not None:
                            await conn.put_resumed(frame)
                cursor = batch[-1].cursor or cursor
        finally:
            conn.release_live()


def _grant_at(changes: list[tuple[tuple[int, int], Matcher]], position: tuple[int, int]) -> Matcher | None:
    """The grant in force when the entry at `position` was published, when it changed since (else None)."""
    for upto, grant in changes:
        if position <= upto:
            return grant
    return None


def _encoded(entry: Entry) -> bytes:
    try:
        return orjson.dumps(entry.event, default=str)
    except TypeError:
        return b""
