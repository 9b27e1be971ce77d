"""The LMS side: an event-tracking backend that hands each event to the hub through Redis.

Configured in the LMS as
`{"realtime": {"ENGINE": "hub.publisher.RealtimeBackend", "OPTIONS": {"redis_url": "..."}}}`.
It runs inside the LMS request, so it must be cheap and must never raise: one Redis round trip
per event on the happy path, and a short circuit breaker when Redis is away so a dead Redis costs
the request nothing but a counter increment.
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
from hub.events import Event, MalformedEvent, normalise
from hub.layout import PUBLISH_SCRIPT, live_channel, stream_key

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
        self._lock = threading.Lock()
        self._open_until = 0.0
        self.counts = {"published": 0, "malformed": 0, "unavailable": 0, "failed": 0}

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
            payload = orjson.dumps(normalise(event), default=str)
        except (MalformedEvent, TypeError) as exc:
            self._count("malformed")
            log.warning("dropped malformed event: %s", exc)
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

    def close(self) -> None:
        self._client.close()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
