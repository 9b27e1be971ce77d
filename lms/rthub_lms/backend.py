"""The LMS side: an event-tracking backend that hands each event to the hub through Redis.

Configured in the LMS as
`{"realtime": {"ENGINE": "rthub_lms.backend.RealtimeBackend", "OPTIONS": {"redis_url": "..."}}}`.
It runs inside the LMS request, so it must be cheap and must never raise: events naming no learner are
dropped before any I/O; events no active client could see (the preemptive filter, an in-memory check)
are held in memory, without I/O, until the filter's thread has checked that no client created or
widened meanwhile wants them (rthub_lms/filter.py: published then, dropped otherwise, counted
`unwanted`); the rest cost one Redis round trip, bounded by `timeout`. When Redis is away, events
go to a local spool file (rthub_lms/spool.py) that a background thread flushes, in order, when it is back;
while anything waits there, new events queue behind it. With the spool disabled
(`spool_max_bytes=0`) a short circuit breaker makes a dead Redis cost the request nothing.

While an active client's actor is the LMS's external id (`--actor lms-external-id`), the learner's
external id of that client's type is made sure of and mirrored before the event is published
(rthub_lms/external_ids.py); `external_ids=False` in OPTIONS turns that off.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from rthub_lms.connect import connect, discover, uses_sharded_pubsub
from rthub_lms.events import MAX_EVENT_BYTES, Event, MalformedEvent, encode, normalise, user_id
from rthub_lms.external_ids import ExternalIdMirror
from rthub_lms.filter import (
    DEFAULT_HOLD,
    DEFAULT_HOLD_MAX_BYTES,
    DEFAULT_HOLD_MAX_EVENTS,
    Admission,
    PreemptiveFilter,
)
from rthub_lms.keys import live_channel, publish_script, stream_key
from rthub_lms.settings import PluginSettings, StreamSettings
from rthub_lms.spool import Flusher, Spool, default_spool_dir

log = logging.getLogger("rthub.publisher")

# How long the backend waits for Redis before giving up on one event (seconds).
DEFAULT_TIMEOUT = 0.05
# After a failure, events are not offered to Redis for this long (seconds).
BREAKER_COOLDOWN = 1.0
DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024
# The flusher runs outside any request, so it may wait longer for Redis than `send` does.
FLUSH_TIMEOUT = 2.0
# Events per script call in a batch write: bounds how long one call holds Redis.
WRITE_MANY_CHUNK = 200


class StreamWriter:
    """Appends normalised events to the stream and the live channel; Redis errors propagate.

    `sharded` says whether the live channel is sharded; when not given, the client is asked (a
    cluster of Redis >= 7 is).
    """

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, settings: StreamSettings, maxlen: int | None = None,
        *, sharded: bool | None = None,
    ) -> None:
        self._client = client
        if sharded is None:
            sharded = uses_sharded_pubsub(client)
        self._script = client.register_script(publish_script(sharded))
        self._many = client.register_script(publish_script(sharded, many=True))
        self._keys = [stream_key(settings), live_channel(settings)]
        self._maxlen = maxlen or settings.stream_maxlen

    def write(self, event: Event) -> str:
        return self.write_encoded(encode(event))

    def write_encoded(self, payload: bytes) -> str:
        return self._script(keys=self._keys, args=[self._maxlen, payload]).decode()

    def write_many(self, events: list[Event]) -> list[str]:
        """One round trip for a batch, for log replay."""
        return self.write_many_encoded([encode(event) for event in events])

    def write_many_encoded(self, payloads: list[bytes]) -> list[str]:
        """One script call per `WRITE_MANY_CHUNK` events: one round trip, in order, on a single server
        or a cluster alike (a cluster pipeline refuses scripts)."""
        cursors: list[str] = []
        for start in range(0, len(payloads), WRITE_MANY_CHUNK):
            chunk = payloads[start:start + WRITE_MANY_CHUNK]
            cursors += [cursor.decode() for cursor in self._many(keys=self._keys, args=[self._maxlen, *chunk])]
        return cursors


class RealtimeBackend:
    """event-tracking backend: `send(event)` normalises and publishes, atomically, never raising."""

    def __init__(self, **options: Any) -> None:
        self.settings = PluginSettings.from_options(options)
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self._topology = discover(self.settings.redis_url)
        # No retries: redis-py's default retry policy would hold the request for seconds.
        self._client = connect(
            self._topology, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._writer = StreamWriter(self._client, self.settings, sharded=self._topology.sharded)
        spool_max = int(options.get("spool_max_bytes", DEFAULT_SPOOL_MAX_BYTES))
        spool_dir = options.get("spool_path") or default_spool_dir(self.settings.redis_url, self.settings.redis_prefix)
        self._spool_dir = spool_dir
        self._spool_max = spool_max
        self._spooling = spool_max > 0
        self._flusher: Flusher | None = None
        self._pid = -1
        self._filter: PreemptiveFilter | None = None
        self._preemptive = bool(options.get("preemptive", True))
        self._mirror = ExternalIdMirror(self._client, self.settings) if options.get("external_ids", True) else None
        self._first_load_wait = timeout
        if self._preemptive or self._mirror is not None:  # the filter also follows which external ids are needed
            filter_client = connect(self._topology, socket_timeout=5, socket_connect_timeout=1)
            self._filter = PreemptiveFilter(
                filter_client, self.settings,
                release=self._release if self._preemptive else None, discard=self._discard,
                hold=float(options.get("hold", DEFAULT_HOLD)),
                hold_max_events=int(options.get("hold_max_events", DEFAULT_HOLD_MAX_EVENTS)),
                hold_max_bytes=int(options.get("hold_max_bytes", DEFAULT_HOLD_MAX_BYTES)),
            )
        self._filter_pid = -1
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._open_until = 0.0
        self.counts = {
            "published": 0, "unwanted": 0, "no_user": 0, "malformed": 0, "oversize": 0, "unavailable": 0, "failed": 0,
            "spooled": 0, "spool_dropped": 0, "spool_failed": 0, "flushed": 0, "hold_full": 0,
        }

    def send(self, event: Mapping[str, Any]) -> str | None:
        """Publish one event; return its cursor, or None when it was not published (and counted)."""
        try:
            return self._send(event)
        except Exception:  # the LMS request must never fail because of us
            log.exception("unexpected error publishing an event")
            self._count("failed")
            return None

    def _send(self, event: Mapping[str, Any]) -> str | None:
        try:
            normalised = normalise(event)
        except MalformedEvent as exc:
            self._count("malformed")
            log.warning("dropped malformed event: %s", exc)
            return None
        if user_id(normalised) is None:
            self._count("no_user")
            return None
        try:
            payload = encode(normalised)
        except MalformedEvent as exc:
            self._count("malformed")
            log.warning("dropped unserialisable event: %s", exc)
            return None
        if len(payload) > MAX_EVENT_BYTES:
            self._count("oversize")
            log.warning("dropped %s event of %d bytes (limit %d)", normalised["name"], len(payload), MAX_EVENT_BYTES)
            return None
        if self._filter is not None:
            if self._filter_pid != os.getpid():
                self._start_filter()
            if self._preemptive:
                admission = self._filter.admit(normalised, payload)
                if admission is Admission.HELD:
                    return None
                if admission is Admission.FULL:
                    self._count("hold_full")
        return self._publish(normalised, payload)

    def _release(self, event: Event, payload: bytes) -> None:
        """A held event the filter's check found wanted: published by the filter's thread, in order."""
        try:
            self._publish(event, payload)
        except Exception:  # the filter's thread must go on with the events after it
            log.exception("unexpected error publishing a held event")
            self._count("failed")

    def _discard(self, count: int) -> None:
        self._count("unwanted", count)

    def _publish(self, normalised: Event, payload: bytes) -> str | None:
        """Mirror the external ids it needs, then write it, or spool it when Redis fails."""
        if self._filter is not None and self._mirror is not None:
            self._mirror_external_ids(self._filter, self._mirror, normalised)
        flusher = self._flusher_for_this_process()
        if flusher is not None and flusher.backlog:
            return self._spool(flusher, payload)
        if time.monotonic() < self._open_until:
            self._count("unavailable")
            return None
        try:
            cursor = self._writer.write_encoded(payload)
        except (RedisError, OSError) as exc:
            log.warning("redis unavailable: %s", exc)
            if self._spooling:
                return self._spool(flusher or self._start_flusher(), payload)
            self._open_until = time.monotonic() + BREAKER_COOLDOWN
            self._count("unavailable")
            return None
        self._count("published")
        return cursor

    @staticmethod
    def _mirror_external_ids(needs: PreemptiveFilter, mirror: ExternalIdMirror, event: Event) -> None:
        """Mirror the learner's external ids the clients that may see the event need, before it goes out;
        a failure is logged and costs the event nothing (the hub then refuses it for those clients)."""
        types = needs.external_id_types(event)
        learner = user_id(event)
        if not types or learner is None:
            return
        try:
            mirror.ensure(learner, types)
        except Exception:
            log.exception("external ids of LMS user %s not mirrored", learner)

    def _spool(self, flusher: Flusher, payload: bytes) -> None:
        """Queue behind what already waits; the flusher publishes it when Redis answers."""
        try:
            flusher.spool.append(payload)
        except OSError as exc:  # an unsafe or unwritable spool directory (UnsafeSpool), a full disk
            self._count("spool_failed")
            log.error("event not spooled: %s", exc)
            return None
        flusher.wake()
        self._count("spooled")
        with self._lock:
            self.counts["spool_dropped"] = flusher.spool.dropped
        return None

    def _flusher_for_this_process(self) -> Flusher | None:
        """This process's flusher, started at its first event when a dead process left events behind.

        LMS workers fork after loading settings, and neither threads nor file locks belong to a
        child, so a changed pid means a fresh spool.
        """
        if self._pid != os.getpid():
            adopt = False
            with self._start_lock:
                if self._pid != os.getpid():
                    self._flusher = None
                    adopt = self._spooling and self._new_spool().has_orphans()
                    self._pid = os.getpid()
            if adopt:
                self._start_flusher()
        return self._flusher

    def _start_flusher(self) -> Flusher:
        with self._start_lock:
            if self._flusher is None:
                client = connect(
                    self._topology, socket_timeout=FLUSH_TIMEOUT, socket_connect_timeout=FLUSH_TIMEOUT,
                    retry=Retry(NoBackoff(), 0),
                )
                writer = StreamWriter(client, self.settings, sharded=self._topology.sharded)
                mirror = self._mirror

                def write(payloads: list[bytes]) -> list[str]:
                    if mirror is not None:  # ids that waited for Redis go before the events that need them
                        mirror.flush_pending(client)
                    return writer.write_many_encoded(payloads)

                self._flusher = Flusher(self._new_spool(), write, on_flushed=self._flushed)
            return self._flusher

    def _new_spool(self) -> Spool:
        return Spool(self._spool_dir, self._spool_max)

    def _flushed(self, count: int) -> None:
        self._count("flushed", count)

    def _start_filter(self) -> None:
        """Started on first use in each process, not in __init__: LMS workers fork after loading settings,
        and the filter's threads and hold are per process. The first event waits for the first load (at
        most `timeout`), so it knows which external ids to mirror."""
        with self._lock:
            if self._filter_pid != os.getpid() and self._filter is not None:
                self._filter.start()
                self._filter_pid = os.getpid()
                started = True
            else:
                started = False
        if started and self._mirror is not None and self._filter is not None:
            self._filter.wait_loaded(self._first_load_wait)

    def close(self) -> None:
        """Stop background work; held events are checked a last time (published when that check fails), events
        still spooled stay on disk for the next process."""
        if self._filter is not None:
            self._filter.close()
        if self._flusher is not None and self._pid == os.getpid():
            self._flusher.close()
            self._flusher.spool.close()
        self._client.close()

    def _count(self, outcome: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[outcome] += amount
