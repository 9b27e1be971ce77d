"""Render once: the encoded `event` frame of one entry per (cursor, translator, actor space).

An actor space (`auth.clients.actor_space`) is a consumer type (anonymised ids) or
`lms-external-id:<type>` (the LMS's external ids); "consumer type" below stands for either.

Sockets, resume and webhook routing all ask for the same frames, often within milliseconds of each
other (the live fan-out and the webhook router read the same entry). Anonymising (a Redis read) and
translating are the expensive steps, so their result is kept in a small LRU keyed by
(cursor, translator, consumer type); `event_facts` is kept per cursor the same way. A cursor names
one immutable stream entry, so a cached frame is never stale. Callers asking for a frame that is
being rendered (waiting for the anonymiser's first Redis read of a learner) wait for that render;
a learner whose anonymised id is already cached is rendered at once, with nothing to wait for.
The cache holds `CACHE_SIZE` frames: enough for every client resuming together across a backlog of
that many events to share one render of each.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import orjson

from hub.anonymise import Anonymiser, NoExternalId
from hub.fanout.frames import EventFrame
from hub.ingest import Entry, cursor_key
from hub.singleflight import SingleFlight
from hub.translate import NoTranslation, TranslationError, TranslationSettings, translate
from rthub_lms.grants import EventFacts, event_facts

log = logging.getLogger("rthub.render")

CACHE_SIZE = 16_384

RenderKey = tuple[str, str, str]


@dataclass(slots=True)
class Frame:
    """Encoded text ready to send; `cursor` is None for control frames such as `gap`."""

    cursor: str | None
    text: str
    facts: EventFacts | None = None
    order: tuple[int, int] | None = field(init=False)
    wire: bytes | None = field(default=None, init=False)  # its WebSocket frame, built once (`websocket.writer.wire`)

    def __post_init__(self) -> None:
        self.order = cursor_key(self.cursor) if self.cursor is not None else None


class Renderer:
    """Anonymise, translate and encode entries, each (cursor, translator, consumer type) at most once
    while it stays among the `size` most recently used."""

    def __init__(
        self, anonymiser: Anonymiser, translation: TranslationSettings, counts: Counter[str], size: int = CACHE_SIZE
    ) -> None:
        self._anonymiser = anonymiser
        self._translation = translation
        self.counts = counts
        self._size = size
        self._frames: OrderedDict[RenderKey, Frame | None] = OrderedDict()
        self._facts: OrderedDict[str, EventFacts] = OrderedDict()
        self._rendering: SingleFlight[RenderKey, Frame | None] = SingleFlight()

    def facts(self, entry: Entry) -> EventFacts:
        """`event_facts` of an entry, computed once per cursor."""
        found = self._facts.get(entry.cursor)
        if found is None:
            found = self.adopt_facts(entry.cursor, event_facts(entry.event))
        return found

    def adopt_facts(self, cursor: str, facts: EventFacts) -> EventFacts:
        """Keep facts computed elsewhere (the render stage) as this cursor's."""
        self._facts[cursor] = facts
        if len(self._facts) > self._size:
            self._facts.popitem(last=False)
        return facts

    def adopt(
        self, cursor: str, translator: str, consumer_type: str, text: str | None, facts: EventFacts
    ) -> Frame | None:
        """The frame the render stage rendered for this group (None: the event has none), kept in the
        cache so resume and webhook routing in this process reuse it."""
        key = (cursor, translator, consumer_type)
        if key in self._frames:
            return self._frames[key]
        return self._keep(key, Frame(cursor, text, facts) if text is not None else None)

    async def render(
        self, entry: Entry, translator: str, consumer_type: str, facts: EventFacts | None = None
    ) -> Frame | None:
        """The encoded `event` frame of `entry` for one (translator, actor space), or None when it names
        no learner or has no translation. Raises `NoExternalId` (counted, never cached: the mirror may be
        filled later) when the space is the LMS's external ids and the learner has none mirrored."""
        key = (entry.cursor, translator, consumer_type)
        if key in self._frames:
            self._frames.move_to_end(key)
            self.counts["render_cache_hits"] += 1
            return self._frames[key]
        facts = facts or self.facts(entry)
        learner = self._learner(facts)
        if learner is None:
            return self._keep(key, None)
        actor = self._anonymiser.known(consumer_type, learner)
        if actor is not None and not self._rendering.running(key):  # nothing to wait for: render now
            return self._keep(key, self._frame(entry, translator, actor, facts))

        async def render_and_keep() -> Frame | None:
            actor = await self._actor(translator, consumer_type, learner)
            return self._keep(key, self._frame(entry, translator, actor, facts))

        frame, joined = await self._rendering.run(key, render_and_keep)
        if joined:
            self.counts["render_joined"] += 1
        return frame

    def _keep(self, key: RenderKey, frame: Frame | None) -> Frame | None:
        self._frames[key] = frame
        if len(self._frames) > self._size:
            self._frames.popitem(last=False)
        return frame

    async def text(self, entry: Entry, translator: str, consumer_type: str, facts: EventFacts) -> str | None:
        """The `event` frame's text for one group, rendered afresh and kept nowhere: the render stage's
        path, which sees each cursor once and serves no resume (a cache there is only cost)."""
        learner = self._learner(facts)
        if learner is None:
            return None
        return self._text(entry, translator, await self._actor(translator, consumer_type, learner))

    def _learner(self, facts: EventFacts) -> str | None:
        """The learner an event names; an event naming none has no frame, and is counted."""
        if facts.user is None:
            self.counts["no_user"] += 1
        return facts.user

    async def _actor(self, translator: str, consumer_type: str, learner: str) -> str:
        """The learner's actor in one actor space, from the anonymiser's cache or its store. A learner
        with no mirrored external id is counted per translator and raises `NoExternalId`."""
        actor = self._anonymiser.known(consumer_type, learner)
        if actor is not None:
            return actor
        try:
            return await self._anonymiser.actor_id(consumer_type, learner)
        except NoExternalId:
            self.counts[f"no_external_id:{translator}"] += 1
            raise

    def _frame(self, entry: Entry, translator: str, actor: str, facts: EventFacts) -> Frame | None:
        text = self._text(entry, translator, actor)
        return Frame(entry.cursor, text, facts) if text is not None else None

    def _text(self, entry: Entry, translator: str, actor: str) -> str | None:
        """Translate and encode (pure CPU, no I/O): None when the translator has nothing for it."""
        try:
            text = event_frame(entry, translator, actor, self._translation)
        except NoTranslation:
            self.counts[f"untranslatable:{translator}"] += 1
            return None
        except TranslationError as exc:
            self.counts[f"malformed:{translator}"] += 1
            log.warning("not translatable to %s: %s", translator, exc, extra={"cursor": entry.cursor})
            return None
        self.counts[f"translated:{translator}"] += 1
        return text


def event_frame(entry: Entry, translator: str, actor: str, settings: TranslationSettings) -> str:
    """The encoded `event` frame of `entry` as the learner `actor` (pure CPU, no I/O); `NoTranslation` or
    `TranslationError` when there is none. The one encoding of an event frame: the fan-out's and the
    backfill's (`hub/backfill/`) are the same bytes."""
    statements = translate(entry.event, translator, actor_id=actor, settings=settings)
    data = statements[0] if len(statements) == 1 else statements
    frame: EventFrame = {"type": "event", "cursor": entry.cursor, "event_type": entry.event["name"], "data": data}
    return orjson.dumps(frame).decode()
