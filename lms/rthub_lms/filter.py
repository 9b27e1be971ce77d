"""The LMS-side preemptive filter (OEP-26 Filter Processor, point 1).

`RealtimeBackend.send()` runs inside the LMS request, so it asks `wanted(event)` and drops events
that no active client's grant could match before they touch Redis. The answer is a pure in-memory
lookup in the union of all active grants; a background thread keeps that union current from Redis:

- `{prefix}{registry}:grants` (hash client id -> grant JSON, active clients only, kept by the hub's client
  registry) is read in full on every reload; the plug-in never reads client records;
- any message on `{prefix}{registry}:changes` triggers a reload, so a new grant counts within a second;
- a reload also runs every `refresh_interval` seconds, and after every (re)subscription, as a safety
  net against missed notices;
- on Redis errors the last known union stays in force and the thread retries with backoff.

The same reload reads `{prefix}{registry}:external-ids` (client id -> ExternalIdType, active
`lms-external-id` clients only), so `external_id_types(event)` says which of the LMS's external ids the
event's learner needs mirrored (rthub_lms/external_ids.py): the types of the clients whose grant
matches it, none before the first load and none while no such client exists.

Until the first successful load `wanted` answers True: the filter fails open, so a slow or absent
Redis at LMS start-up never loses events, it only skips the optimisation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from rthub_lms.events import Event
from rthub_lms.grants import GrantIndex, compile_grant, event_facts, validate_grant
from rthub_lms.keys import Prefixed, active_grants_key, changes_channel, external_id_clients_key

log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
# Longest the thread blocks waiting for a notice, so `close()` and the timer are honoured promptly.
_POLL = 0.25


class PreemptiveFilter:
    """Answers "could any active client see this event?" from an in-memory union of grants."""

    def __init__(self, redis_client: redis.Redis, settings: Prefixed, refresh_interval: float = 30.0) -> None:
        self._redis = redis_client
        self._grants_key = active_grants_key(settings)
        self._external_key = external_id_clients_key(settings)
        self._needs: dict[str, GrantIndex] = {}  # ExternalIdType -> grants of the clients that need it
        self._channel = changes_channel(settings)
        self._refresh_interval = refresh_interval
        self._union: GrantIndex | None = None
        self._loads = 0
        self._first_load = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        """Whether a union has been loaded; before that `wanted` fails open."""
        return self._union is not None

    def wait_loaded(self, timeout: float) -> bool:
        """Block until the first union is loaded (True), or `timeout` s pass (False: still failing open)."""
        return self._first_load.wait(timeout)

    def wanted(self, event: Event) -> bool:
        """True iff some active client's grant matches the event (always True before the first load)."""
        union = self._union
        if union is None:
            return True
        return union.matches_any(event_facts(event))

    def external_id_types(self, event: Event) -> list[str]:
        """The ExternalIdTypes whose clients' grants match the event: what its learner needs mirrored."""
        needs = self._needs
        if not needs:
            return []
        facts = event_facts(event)
        return [id_type for id_type, index in needs.items() if index.matches_any(facts)]

    def start(self) -> None:
        """Start the background refresher (a daemon thread); returns at once.

        Threads do not survive fork(): in a pre-forking LMS server, start it in each worker process
        (for instance lazily, on the first event that worker sends).
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rthub-preemptive-filter", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the refresher; `wanted` keeps answering from the last known union."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def reload(self) -> None:
        """Read every active client's grant from Redis and swap in their union."""
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
        self._union = union
        self._needs = needs
        self._loads += 1
        self._first_load.set()

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


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value
