"""The LMS-side preemptive filter (OEP-26 Filter Processor, point 1).

`RealtimeBackend.send()` runs inside the LMS request, so it asks `admit(event)` and keeps events that no
active client's grant could match from Redis. The answer is a pure in-memory lookup in the union of all
active grants; a background thread keeps that union current from Redis:

- `{prefix}{registry}:grants` (hash client id -> grant JSON, active clients only, kept by the hub's client
  registry) is read in full on every reload; the plug-in never reads client records;
- any message on `{prefix}{registry}:changes` triggers a reload, so a new grant usually counts within
  milliseconds of the change;
- a reload also runs every `refresh_interval` seconds, and after every (re)subscription, as a safety
  net against missed notices;
- on Redis errors the last known union stays in force and the thread retries with backoff.

A notice arrives after the change it announces, so an event sent right after a client was created can
meet a union loaded before it. Such an event is therefore not dropped at once but **held**: every union
is tagged with the interest version (`{prefix}{registry}:interest`, which the registry increments in the
transaction of every change) read *before* its grants, and an event the union does not want waits in a
bounded in-memory buffer (rthub_lms/hold.py) with that version. A second thread, every `hold` seconds
while anything is held and at once when the buffer is full, GETs the version: unchanged, the held events
(all of which arrived before the GET) are dropped for good (`discard`); changed, it reloads the union and
judges them again, handing the wanted ones, in arrival order, to `release` (the backend's write path).
The registry answers a change only once the version moved, so an event sent after that answer is judged
by a union that includes the change, or judged again after a GET that sees it: lost or late notices,
and a cut pub/sub connection, delay such an event by up to `hold` seconds, they never drop it. No I/O
happens in `admit`. A GET that fails keeps the events held and retries; at the buffer's cap (`FULL`)
events are published without a verdict rather than dropped, as are the held ones when the filter closes
(also at interpreter exit) without an answer. What remains: events held when the LMS process is
SIGKILLed (or dies without exiting) are lost, which loses events only if a change made them wanted in
the `hold` seconds before the kill. A hub that does not keep the interest version (older than this
plug-in) leaves it absent: every held event is then dropped after `hold` seconds, as before.

A held event that turns out wanted reaches the stream after the wanted events sent after it (by up to
`hold` seconds); only events made wanted by a change in those seconds are ever held and then sent.

The same reload reads `{prefix}{registry}:external-ids` (client id -> ExternalIdType, active
`lms-external-id` clients only), so `external_id_types(event)` says which of the LMS's external ids the
event's learner needs mirrored (rthub_lms/external_ids.py): the types of the clients whose grant
matches it, none before the first load and none while no such client exists.

Until the first successful load every event is wanted: the filter fails open, so a slow or absent
Redis at LMS start-up never loses events, it only skips the optimisation.

Threads do not survive fork(): `start()` starts them in each process that calls it (a pre-forked LMS
worker calls it on its first event), with a hold of its own; a parent's held events stay the parent's.
"""

from __future__ import annotations

import atexit
import enum
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from rthub_lms.events import Event
from rthub_lms.grants import GrantIndex, compile_grant, event_facts, validate_grant
from rthub_lms.hold import HoldBuffer
from rthub_lms.keys import (
    Prefixed,
    active_grants_key,
    changes_channel,
    external_id_clients_key,
    interest_version_key,
)

log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
# Longest the thread blocks waiting for a notice, so `close()` and the timer are honoured promptly.
_POLL = 0.25
DEFAULT_HOLD = 0.5
DEFAULT_HOLD_MAX_EVENTS = 10_000
DEFAULT_HOLD_MAX_BYTES = 16 * 1024 * 1024
# How long `close()` waits for the threads (the hold's last check and publications included).
_CLOSE_WAIT = 10.0

Release = Callable[[Event, bytes], None]


class Admission(enum.Enum):
    WANTED = "wanted"  # publish it now
    HELD = "held"  # kept in memory: published later if a change made it wanted, else discarded
    FULL = "full"  # unwanted by the union, but the hold is full: publish it rather than drop it unchecked


@dataclass(frozen=True)
class _Snapshot:
    union: GrantIndex
    needs: dict[str, GrantIndex]  # ExternalIdType -> grants of the clients that need it
    version: bytes | None  # the interest version read before the grants: the snapshot is at least this new


class PreemptiveFilter:
    """Answers "could any active client see this event?" from an in-memory union of grants, holding the
    events it says no to until a GET of the interest version confirms the answer (`release`, `discard`)."""

    def __init__(
        self, redis_client: redis.Redis, settings: Prefixed, refresh_interval: float = 30.0, *,
        release: Release | None = None, discard: Callable[[int], None] | None = None,
        hold: float = DEFAULT_HOLD, hold_max_events: int = DEFAULT_HOLD_MAX_EVENTS,
        hold_max_bytes: int = DEFAULT_HOLD_MAX_BYTES,
    ) -> None:
        self._redis = redis_client
        self._grants_key = active_grants_key(settings)
        self._external_key = external_id_clients_key(settings)
        self._version_key = interest_version_key(settings)
        self._channel = changes_channel(settings)
        self._refresh_interval = refresh_interval
        self._release = release
        self._discard = discard
        self._hold = hold
        self._hold_caps = (hold_max_events, hold_max_bytes)
        self._held: HoldBuffer[tuple[Event, bytes, bytes | None]] = HoldBuffer(*self._hold_caps)
        self._snapshot: _Snapshot | None = None
        self._loads = 0
        self._first_load = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pid = -1

    @property
    def loaded(self) -> bool:
        """Whether a union has been loaded; before that `wanted` fails open."""
        return self._snapshot is not None

    @property
    def held(self) -> int:
        """Events held in this process, waiting for the interest version's check."""
        return len(self._held)

    def wait_loaded(self, timeout: float) -> bool:
        """Block until the first union is loaded (True), or `timeout` s pass (False: still failing open)."""
        return self._first_load.wait(timeout)

    def wanted(self, event: Event) -> bool:
        """True iff some active client's grant in the last union matches the event (always True before the
        first load). The union's answer alone: nothing is dropped on it without `confirm` (the ingest) or the
        hold (`admit`)."""
        snapshot = self._snapshot
        return snapshot is None or snapshot.union.matches_any(event_facts(event))

    def verdict(self, event: Event) -> tuple[bool, bytes | None]:
        """Whether the last union wants the event, and the interest version that union claims: what
        `confirm` needs before an unwanted event may be dropped (always wanted before the first load)."""
        snapshot = self._snapshot
        if snapshot is None:
            return True, None
        return snapshot.union.matches_any(event_facts(event)), snapshot.version

    def confirm(self, judged: list[tuple[Event, bytes | None]]) -> list[bool]:
        """For events a union of version `v` did not want, given as (event, v): True for each that is
        still unwanted. One GET of the interest version; a reload and a second judgement only when it
        moved. Every event given arrived before the GET, so an unchanged version means no change its
        union missed had been answered when it arrived. Redis errors propagate."""
        version = _version(self._redis.get(self._version_key))
        snapshot = self._snapshot
        if snapshot is None or snapshot.version != version:
            snapshot = self.reload()
        return [was == version or not snapshot.union.matches_any(event_facts(event)) for event, was in judged]

    def admit(self, event: Event, payload: bytes) -> Admission:
        """WANTED, or HELD for the hold's check (needs `start()` in this process and a `release`), or FULL
        when the hold is at its cap. In memory only: no I/O, never blocks on Redis."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.union.matches_any(event_facts(event)):
            return Admission.WANTED
        if not self._held.add((event, payload, snapshot.version), len(payload)):
            self._wake.set()
            return Admission.FULL
        if self._held.full:
            self._wake.set()
        return Admission.HELD

    def external_id_types(self, event: Event) -> list[str]:
        """The ExternalIdTypes whose clients' grants match the event: what its learner needs mirrored."""
        snapshot = self._snapshot
        if snapshot is None or not snapshot.needs:
            return []
        facts = event_facts(event)
        return [id_type for id_type, index in snapshot.needs.items() if index.matches_any(facts)]

    def start(self) -> None:
        """Start the background threads of this process (daemons); returns at once, and at once again.

        Threads do not survive fork(): a process that did not start them (a pre-forked LMS worker) starts
        its own, with a hold of its own; the parent's held events stay with the parent, which settles them.
        """
        if self._threads and self._pid == os.getpid():
            return
        if self._pid not in (-1, os.getpid()):
            # Forked: fresh primitives (a lock a thread of the parent held at fork() would never be
            # released here) and an empty hold (the parent settles its own).
            self._held = HoldBuffer(*self._hold_caps)
            self._first_load = threading.Event()
            if self._snapshot is not None:
                self._first_load.set()
            self._wake, self._reload_lock = threading.Event(), threading.Lock()
            self._stop = threading.Event()
        if self._release is not None and self._pid != os.getpid():
            atexit.register(_close_at_exit, weakref.ref(self))
        self._pid = os.getpid()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name="rthub-preemptive-filter", daemon=True)]
        if self._release is not None:
            self._threads.append(threading.Thread(target=self._run_hold, name="rthub-preemptive-hold", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the threads, after the hold's last check (held events it cannot check are published);
        `wanted` keeps answering from the last known union."""
        if self._pid != os.getpid() or not self._threads:
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=_CLOSE_WAIT)
        self._threads = []

    def reload(self) -> _Snapshot:
        """Read every active client's grant from Redis and swap in their union; returns it.

        The interest version is read first: the grants read after it include every change up to it, so
        the snapshot is never older than the version it claims.
        """
        with self._reload_lock:  # swaps happen in the order of their version reads
            version = self._redis.get(self._version_key)
            union = GrantIndex()
            external = {_text(k): _text(v) for k, v in self._redis.hgetall(self._external_key).items()}
            needs: dict[str, GrantIndex] = {}
            for raw_id, grant in self._redis.hgetall(self._grants_key).items():
                client_id = _text(raw_id)
                try:
                    rules = validate_grant(json.loads(grant), field=f"client {client_id} grant")
                except ValueError as exc:  # bad JSON, or a GrantError
                    log.warning("preemptive filter: ignoring client %s, unreadable grant: %s", client_id, exc)
                    continue
                # Identical rules across clients are kept once: the union only asks "any match?".
                for rule in rules:
                    union.set(json.dumps(rule, sort_keys=True), compile_grant([rule]))
                id_type = external.get(client_id)
                if id_type:
                    needs.setdefault(id_type, GrantIndex()).set(client_id, compile_grant(rules))
            snapshot = self._snapshot = _Snapshot(union, needs, _version(version))
            self._loads += 1
        self._first_load.set()
        return snapshot

    def _run_hold(self) -> None:
        """Settle the hold every `hold` seconds, at once when it is full, and a last time when stopped."""
        failing = False
        while True:
            self._wake.wait(self._hold)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._settle(last=stopping)
                failing = False
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning("preemptive filter: interest version unreadable (%s); %d events held", exc, self.held)
                failing = True
            except Exception:  # the hold must outlive a bug in one settlement
                log.exception("preemptive filter: settling the held events failed")
            if stopping:
                return

    def _settle(self, last: bool = False) -> None:
        """Drop the held events no change made wanted since they were judged; publish the others.

        Everything taken arrived before the GET, so a version equal to an event's means no change had
        been answered when it arrived that its union missed. On a Redis error the events are put back
        (RedisError propagates), or published unjudged when the hold is full or the filter is closing.
        """
        batch = self._held.take()
        if not batch:
            return
        try:
            unwanted = self.confirm([(event, judged) for (event, _, judged), _ in batch])
        except (redis.RedisError, OSError):
            self._held.restore(batch)
            if last or self._held.full:  # never drop what could not be checked
                self._publish([item for item, _ in self._held.take()])
            raise
        self._publish([item for (item, _), drop in zip(batch, unwanted, strict=True) if not drop])
        dropped = sum(unwanted)
        if dropped and self._discard is not None:
            self._discard(dropped)

    def _publish(self, items: list[tuple[Event, bytes, bytes | None]]) -> None:
        assert self._release is not None
        for event, payload, _ in items:
            self._release(event, payload)

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stop.is_set():
            loads = self._loads
            pubsub = self._redis.pubsub()
            try:
                pubsub.subscribe(self._channel)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self._loads != loads:
                    backoff = _BACKOFF_FIRST
                log.warning("preemptive filter: Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                pubsub.close()

    def _listen(self, pubsub: Any) -> None:
        """Reload on every (re)subscription confirmation, change notice, and timer tick until stopped."""
        next_refresh = time.monotonic() + self._refresh_interval
        while not self._stop.is_set():
            timeout = max(0.0, min(_POLL, next_refresh - time.monotonic()))
            reload = False
            message = pubsub.get_message(timeout=timeout)
            while message is not None:  # drain: a burst of notices costs one reload
                reload = reload or message["type"] in ("subscribe", "message")
                message = pubsub.get_message(timeout=0)
            if reload or time.monotonic() >= next_refresh:
                self.reload()
                next_refresh = time.monotonic() + self._refresh_interval


def _close_at_exit(ref: weakref.ref[PreemptiveFilter]) -> None:
    """At interpreter exit, settle (or publish) what this process still holds."""
    preemptive = ref()
    if preemptive is not None:
        preemptive.close()


def _version(value: Any) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value
