"""The ingest loop: read the bus stream with a consumer group, append to rthub, then acknowledge.

Order of work, each a batch of up to `batch` messages:
1. this consumer's own pending messages (read before a crash, never acknowledged), oldest first;
2. messages other consumers of the group left pending for longer than `claim_idle_ms` (XAUTOCLAIM),
   at start and every `claim_every` seconds;
3. new messages (`>`), blocking up to `block_ms`.
A message is acknowledged only after what it became is in rthub's Redis: an event in the stream, or a
dead letter with its reason (undecodable, unknown type, oversize, trimmed away before it was read).
Events the plug-in would drop (naming no learner, or wanted by no active grant) are acknowledged
and counted; an event the filter's union does not want is dropped only once a read of the registry's
interest version, made after it was read off the bus, shows no change the union missed
(`PreemptiveFilter.confirm`): a message read after a client was created is judged by a union that
knows it. Redis errors on either side are retried with backoff, from step 1, so a restarted Redis
costs a pause, not an event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis
from redis.exceptions import RedisError, ResponseError

from hub.eventbus.decode import TYPE_HEADER, TrackingDecoder, UnusableMessage
from hub.eventbus.sink import DeadLetter, OnceWriter, Publish
from hub.redis import Backoff
from rthub_lms.events import MAX_EVENT_BYTES, Event, MalformedEvent, TooDeep, encode, user_id
from rthub_lms.filter import PreemptiveFilter

log = logging.getLogger("rthub.eventbus")

RAW_KEPT = 4096
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0

Entry = tuple[bytes, dict[bytes, bytes] | None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unwanted:
    """A message whose event the filter's union of interest `version` did not want, until `confirm`."""

    bus_id: str
    fields: dict[bytes, bytes]
    event: Event
    version: bytes | None


@dataclass(frozen=True, slots=True)
class IngestOptions:
    stream: str
    group: str
    consumer: str
    batch: int = 200
    block_ms: int = 1000
    claim_idle_ms: int = 60_000
    claim_every: float = 5.0
    start_id: str = "$"


class EventBusIngest:
    """One consumer of the group; `run(stop)` until `stop` is set. `counts` says what happened to messages."""

    def __init__(
        self,
        bus: redis.Redis,
        writer: OnceWriter,
        options: IngestOptions,
        decoder: TrackingDecoder | None = None,
        wanted: PreemptiveFilter | None = None,
    ) -> None:
        self._bus = bus
        self._writer = writer
        self._options = options
        self._decoder = decoder or TrackingDecoder()
        self._filter = wanted
        self._next_claim = 0.0
        self._group_ready = False
        self.counts: Counter[str] = Counter()

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; Redis failures are logged and retried, never raised."""
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
        while not stop.is_set():
            try:
                self._recover()
                backoff.reset()
                while not stop.is_set():
                    self.step()
            except (RedisError, OSError) as exc:
                self.counts["redis_errors"] += 1
                delay = backoff.next_delay()
                log.warning("event bus ingest: Redis failed (%s); retrying in %.1fs", exc, delay)
                stop.wait(delay)

    def _recover(self) -> None:
        """After a start or a failure: the group exists, stale records are swept, own pending is done."""
        self._ensure_group()
        self._sweep_applied()
        while self._handle(self._read("0")):
            pass
        self._next_claim = 0.0

    def step(self) -> int:
        """One batch: claimed messages when a claim is due and finds some, else new ones. Returns how many."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._options.claim_every
            claimed = self._claim()
            if claimed:
                return claimed
        return self._handle(self._read(">", block=True))

    def _ensure_group(self) -> None:
        start = self._options.start_id if not self._group_ready else "0"
        try:
            self._bus.xgroup_create(self._options.stream, self._options.group, id=start, mkstream=True)
            if self._group_ready:
                log.warning("event bus ingest: group %s was gone (Redis lost its data?); recreated from the start",
                            self._options.group)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _sweep_applied(self) -> None:
        """Forget append records of messages no longer pending (acknowledged just before a crash)."""
        stale = []
        for bus_id in self._writer.applied():
            pending = self._bus.xpending_range(self._options.stream, self._options.group, bus_id, bus_id, 1)
            if not pending:
                stale.append(bus_id)
        self._writer.forget(stale)

    def _read(self, from_id: str, block: bool = False) -> list[Entry]:
        options = self._options
        try:
            reply = self._bus.xreadgroup(
                options.group, options.consumer, {options.stream: from_id}, count=options.batch,
                block=options.block_ms if block else None,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._ensure_group()
                return []
            raise
        return reply[0][1] if reply else []

    def _claim(self) -> int:
        """Take over what dead consumers left pending for longer than `claim_idle_ms`; returns how many."""
        options = self._options
        start, total = "0-0", 0
        while True:
            reply = self._bus.xautoclaim(
                options.stream, options.group, options.consumer, options.claim_idle_ms, start, count=options.batch
            )
            start, entries = reply[0], list(reply[1])
            # Redis 7 also lists pending ids whose entries were trimmed away; it has dropped them from the
            # pending list, and they become dead letters like any trimmed entry.
            entries += [(gone, None) for gone in (reply[2] if len(reply) > 2 else [])]
            if entries:
                self.counts["claimed"] += len(entries)
            total += self._handle(entries)
            if start in (b"0-0", "0-0"):
                return total

    def _handle(self, entries: Sequence[Entry]) -> int:
        """Append what each entry becomes, then acknowledge them all, then forget the append records."""
        if not entries:
            return 0
        outcomes: list[Publish | DeadLetter | Unwanted] = []
        for raw_id, fields in entries:
            outcome = self._outcome(raw_id.decode(), fields)
            if outcome is not None:
                outcomes.append(outcome)
        items = self._confirm_unwanted(outcomes)
        for item, written in zip(items, self._writer.write_batch(items), strict=True):
            kind = "published" if isinstance(item, Publish) else "deadlettered"
            self.counts[kind if written.fresh else f"{kind}_before"] += 1
        self._bus.xack(self._options.stream, self._options.group, *(raw_id for raw_id, _ in entries))
        self._writer.forget([item.bus_id for item in items])
        return len(entries)

    def _confirm_unwanted(self, outcomes: list[Publish | DeadLetter | Unwanted]) -> list[Publish | DeadLetter]:
        """Drop (and count) the unwanted events the interest version confirms; the others are published,
        in bus order. Redis errors propagate: nothing is acknowledged, the batch is read again."""
        unwanted = [outcome for outcome in outcomes if isinstance(outcome, Unwanted)]
        if self._filter is None or not unwanted:
            return [outcome for outcome in outcomes if not isinstance(outcome, Unwanted)]
        still = dict(zip((u.bus_id for u in unwanted),
                         self._filter.confirm([(u.event, u.version) for u in unwanted]), strict=True))
        items: list[Publish | DeadLetter] = []
        for outcome in outcomes:
            if not isinstance(outcome, Unwanted):
                items.append(outcome)
            elif still[outcome.bus_id]:
                self.counts["unwanted"] += 1
            else:
                self.counts["wanted_after_change"] += 1
                publish = partial(self._publishable, outcome.bus_id, outcome.fields, outcome.event)
                items.append(self._guarded(outcome.bus_id, outcome.fields, publish))
        return items

    def _outcome(self, bus_id: str, fields: dict[bytes, bytes] | None) -> Publish | DeadLetter | Unwanted | None:
        """What a message becomes. Never raises: a message the ingest chokes on must not stop the ones after it."""
        return self._guarded(bus_id, fields, lambda: self._carry(bus_id, fields))

    def _guarded(self, bus_id: str, fields: dict[bytes, bytes] | None, step: Callable[[], T]) -> T | DeadLetter:
        """`step()`, or an `error` dead letter for the message when it raises."""
        try:
            return step()
        except Exception as exc:
            log.exception("event bus ingest: unexpected error on %s", bus_id)
            return self._dead(bus_id, fields or {}, UnusableMessage("error", repr(exc)))

    def _carry(self, bus_id: str, fields: dict[bytes, bytes] | None) -> Publish | DeadLetter | Unwanted | None:
        if not fields:  # pending, but trimmed out of the stream (MAXLEN) before it was read: no fields left
            return self._dead(bus_id, {}, UnusableMessage("trimmed", "the entry left the stream before it was read"))
        try:
            event = self._decoder.decode(fields)
        except UnusableMessage as exc:
            return self._dead(bus_id, fields, exc)
        if user_id(event) is None:
            self.counts["no_user"] += 1
            return None
        if self._filter is not None:
            wanted, version = self._filter.verdict(event)
            if not wanted:
                return Unwanted(bus_id, fields, event, version)
        return self._publishable(bus_id, fields, event)

    def _publishable(self, bus_id: str, fields: dict[bytes, bytes], event: Event) -> Publish | DeadLetter:
        try:
            payload = encode(event)
        except TooDeep as exc:
            return self._dead(bus_id, fields, UnusableMessage("bad-json", str(exc)))
        except MalformedEvent as exc:  # e.g. an integer beyond 64 bits: the plug-in drops these as malformed too
            return self._dead(bus_id, fields, UnusableMessage("malformed", str(exc)))
        if len(payload) > MAX_EVENT_BYTES:
            problem = UnusableMessage("oversize", f"{len(payload)} bytes (limit {MAX_EVENT_BYTES})")
            return self._dead(bus_id, fields, problem)
        return Publish(bus_id, payload)

    def _dead(self, bus_id: str, fields: dict[bytes, bytes], problem: UnusableMessage) -> DeadLetter:
        self.counts[f"reason:{problem.reason}"] += 1
        log.warning("event bus ingest: dead letter %s %s: %s", bus_id, problem.reason, problem.detail)
        headers = {
            key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
            for key, value in fields.items() if key != b"event_data"
        }
        return DeadLetter(bus_id, {
            "stream": self._options.stream,
            "id": bus_id,
            "reason": problem.reason,
            "detail": problem.detail[:RAW_KEPT],
            "type": fields.get(TYPE_HEADER, b"")[:RAW_KEPT],
            "headers": json.dumps(headers)[:RAW_KEPT],
            "raw": fields.get(b"event_data", b"")[:RAW_KEPT],
        })
