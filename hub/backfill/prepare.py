"""What a backfill does with each log line before anything is queued: pure functions, no I/O.

A line is read as `rthub publish` reads it (`hub.logimport.parse_line`), then sorted into one of:
queued (in the time window, in the client's grant, carried by the live path, translated), filtered
out (outside `--since/--until`, not in the grant, over the plug-in's 64 KiB limit), untranslatable
(names no learner, no mapping in the client's translator, malformed for it) or unreadable. The grant
is the client's compiled matcher (`rthub_lms.grants`, as the hub's match stage uses it); the frame is
`hub.fanout.render.event_frame`, the live path's own encoding. `Tally` counts every outcome per event
name with its reason: the `--dry-run` report, and the run's summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from hub.fanout.render import event_frame
from hub.ingest import Entry
from hub.logimport import parse_line
from hub.translate import NoTranslation, TranslationError, TranslationSettings, supports
from rthub_lms.events import MAX_EVENT_BYTES, Event, MalformedEvent, encode
from rthub_lms.grants import Matcher, event_facts

Outcome = Literal["queued", "filtered", "untranslatable", "unreadable"]
OUTCOMES: tuple[Outcome, ...] = ("queued", "filtered", "untranslatable", "unreadable")
UNREADABLE = "(unreadable line)"


def parse_time(value: str) -> datetime:
    """An ISO 8601 date or date-time; UTC when it names no zone. `ValueError` otherwise."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """`--since` (inclusive) and `--until` (exclusive) on the event's own time."""

    since: datetime | None = None
    until: datetime | None = None

    def excludes(self, event: Event) -> str | None:
        """Why the event is outside the window, or None when it is inside (or there is no window)."""
        if self.since is None and self.until is None:
            return None
        try:
            moment = parse_time(str(event["timestamp"]))
        except ValueError:
            return "event time unreadable"
        if self.since is not None and moment < self.since:
            return "before --since"
        if self.until is not None and moment >= self.until:
            return "at or after --until"
        return None


@dataclass(slots=True)
class Tally:
    """Counts per (outcome, event name, reason); `queued` has no reason."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, outcome: Outcome, name: str, reason: str = "", count: int = 1) -> None:
        self.counts[(outcome, name, reason)] += count

    def total(self, outcome: Outcome) -> int:
        return sum(count for (kind, _, _), count in self.counts.items() if kind == outcome)

    def as_rows(self) -> list[list[str | int]]:
        """The counts as JSON-ready rows [outcome, name, reason, count] (kept in the checkpoint)."""
        return [[outcome, name, reason, count] for (outcome, name, reason), count in sorted(self.counts.items())]

    @classmethod
    def from_rows(cls, rows: Iterable[list]) -> Tally:
        tally = cls()
        for outcome, name, reason, count in rows:
            tally.counts[(outcome, name, reason)] += int(count)
        return tally


NO_EXTERNAL_ID = ("no_external_id: the LMS mirrored no external id for the learner (run "
                  "`python -m rthub_lms.external_ids` in the LMS, then this backfill again with --restart)")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event that passed every filter, waiting for its learner's actor id to be translated."""

    event: Event
    learner: str


class Preparer:
    """Sorts lines for one client (its grant, translator and the time window) and renders the candidates."""

    def __init__(self, matcher: Matcher, translator: str, window: Window, translation: TranslationSettings) -> None:
        self._matcher = matcher
        self._translator = translator
        self._window = window
        self._translation = translation
        self.tally = Tally()

    def sort(self, line: bytes) -> Candidate | None:
        """The line's event when it is to be translated; otherwise None, with its outcome counted."""
        event = parse_line(line)
        if isinstance(event, str):
            self.tally.add("unreadable", UNREADABLE, event)
            return None
        name = event["name"]
        excluded = self._window.excludes(event)
        if excluded is not None:
            self.tally.add("filtered", name, excluded)
            return None
        facts = event_facts(event)
        if not self._matcher.matches(facts):
            self.tally.add("filtered", name, "not in the client's grant")
            return None
        if len(line) > MAX_EVENT_BYTES // 2 and (dropped := _dropped_by_plugin(event)):
            self.tally.add("filtered", name, dropped)
            return None
        if facts.user is None:
            self.tally.add("untranslatable", name, "names no learner")
            return None
        if not supports(self._translator, name):
            self.tally.add("untranslatable", name, f"no {self._translator} mapping")
            return None
        return Candidate(event, facts.user)

    def unnamed(self, candidate: Candidate) -> None:
        """Count a candidate whose learner has no id in the client's actor space (an `lms-external-id`
        client, a learner the LMS has not mirrored): never sent under another id."""
        self.tally.add("untranslatable", candidate.event["name"], NO_EXTERNAL_ID)

    def render(self, candidate: Candidate, cursor: str, actor: str) -> str | None:
        """The event frame (the live path's bytes, with `cursor`), or None with the reason counted."""
        name = candidate.event["name"]
        try:
            text = event_frame(Entry(cursor, candidate.event), self._translator, actor, self._translation)
        except NoTranslation as exc:
            self.tally.add("untranslatable", name, str(exc))
            return None
        except TranslationError as exc:
            self.tally.add("untranslatable", name, f"malformed for {self._translator}: {_first_line(exc)}")
            return None
        self.tally.add("queued", name)
        return text


def _dropped_by_plugin(event: Event) -> str | None:
    """Why the LMS plug-in would not have published this event (too big to store, or not storable)."""
    try:
        size = len(encode(event))
    except MalformedEvent as exc:
        return f"not storable: {exc}"
    return f"over {MAX_EVENT_BYTES // 1024} KiB (the LMS plug-in drops it)" if size > MAX_EVENT_BYTES else None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
