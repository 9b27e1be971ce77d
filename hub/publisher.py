"""The LMS side: an event-tracking backend that hands each event to the hub through Redis.

Configured in the LMS as
`{"realtime": {"ENGINE": "hub.publisher.RealtimeBackend", "OPTIONS": {"redis_url": "..."}}}`.
It runs inside the LMS request, so it must be cheap and must never raise: events no active client
could see (the preemptive filter, an in-memory check) and events naming no learner are dropped
before any I/O; the rest cost one Redis round trip; a short circuit breaker when Redis is away
makes a dead Redis cost the request nothing but a counter increment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
import redis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.events import MAX_EVENT_BYTES, Event, MalformedEvent, normalise, user_id
from hub.layout import PUBLISH_SCRIPT, live_channel, stream_key
from hub.preemptive import PreemptiveFilter

log = logging.getLogger("rthub.publisher")

# How long the backend waits for Redis before giving up on one event (seconds).
DEFAULT_TIMEOUT = 0.05
# After a failure, events are not offered to Redis for this long (seconds).
BREAKER_COOLDOWN = 1.0


class StreamWriter:
    """Appends normalised events to the stream and the live channel; Redis errors propagate."""

    def __init__(self, client: redis.Redis, settings: Settings, maxlen: int | None = None) -> None:
        self._client = client
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._keys = [stream_key(settings), live_channel(settings)]
        self._maxlen = maxlen or settings.stream_maxlen

    def write(self, event: Event) -> str:
        return self.write_encoded(orjson.dumps(event, default=str))

    def write_encoded(self, payload: bytes) -> str:
        return self._script(keys=self._keys, args=[self._maxlen, payload]).decode()

    def write_many(self, events: list[Event]) -> list[str]:
        """One round trip for a batch, for log replay."""
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            self._script(keys=self._keys, args=[self._maxlen, orjson.dumps(event, default=str)], client=pipe)
        return [cursor.decode() for cursor in pipe.execute()]


class RealtimeBackend:
    """event-tracking backend: `send(event)` normalises and publishes, atomically, never raising."""

    def __init__(self, **options: Any) -> None:
        self.settings = Settings.from_env(
            redis_url=options.get("redis_url"), redis_prefix=options.get("redis_prefix")
        )
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self._client = redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        maxlen = options.get("stream_maxlen")
        self._writer = StreamWriter(self._client, self.settings, int(maxlen) if maxlen else None)
        self._filter: PreemptiveFilter | None = None
        if options.get("preemptive", True):
            filter_client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=1)
            self._filter = PreemptiveFilter(filter_client, self.settings)
        self._filter_started = False
        self._lock = threading.Lock()
        self._open_until = 0.0
        self.counts = {
            "published": 0, "unwanted": 0, "no_user": 0, "malformed": 0, "oversize": 0, "unavailable": 0, "failed": 0,
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
        if self._filter is not None:
            if not self._filter_started:
                self._start_filter()
            if not self._filter.wanted(normalised):
                self._count("unwanted")
                return None
        try:
            payload = orjson.dumps(normalised, default=str)
        except TypeError as exc:
            self._count("malformed")
            log.warning("dropped unserialisable event: %s", exc)
            return None
        if len(payload) > MAX_EVENT_BYTES:
            self._count("oversize")
            log.warning("dropped %s event of %d bytes (limit %d)", normalised["name"], len(payload), MAX_EVENT_BYTES)
            return None
        if time.monotonic() < self._open_until:
            self._count("unavailable")
            return None
        try:
            cursor = self._writer.write_encoded(payload)
        except (RedisError, OSError) as exc:
            self._open_until = time.monotonic() + BREAKER_COOLDOWN
            self._count("unavailable")
            log.warning("redis unavailable, event not published: %s", exc)
            return None
        self._count("published")
        return cursor

    def _start_filter(self) -> None:
        """Started on first use, not in __init__: LMS workers fork after loading settings."""
        with self._lock:
            if not self._filter_started and self._filter is not None:
                self._filter.start()
                self._filter_started = True

    def close(self) -> None:
        if self._filter is not None:
            self._filter.close()
        self._client.close()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
