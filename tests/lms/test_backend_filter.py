"""The LMS-side preemptive filter inside `RealtimeBackend`: events nobody may see never reach Redis."""

from __future__ import annotations

import redis

from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub
from tests.waiting import wait_until


def _wait_loaded(backend: RealtimeBackend, probe: dict) -> None:
    backend.send(probe)
    wait_until(lambda: backend._filter.loaded, 5, "filter never loaded")  # type: ignore[union-attr]


def test_events_nobody_can_see_never_reach_redis_and_new_grants_count_within_a_second(hub: Hub) -> None:
    stream = redis.Redis.from_url(hub.redis_url)
    stream_key = rkeys.stream_key(rkeys.Prefix(hub.prefix))
    lms = SimulatedLMS(seed=31)
    events = [lms.next_event() for _ in range(200)]
    mitx = [e for e in events if e["context"]["course_id"].startswith("course-v1:MITx+")]
    others = [e for e in events if not e["context"]["course_id"].startswith("course-v1:MITx+")]
    assert mitx and others

    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    _wait_loaded(backend, others[0])
    before = stream.xlen(stream_key)
    for event in events:
        assert backend.send(event) is None
    assert stream.xlen(stream_key) == before
    assert backend.counts["unwanted"] >= len(events)

    hub.client(grant=[{"courses": ["course-v1:MITx+*"]}])
    wait_until(lambda: backend.send(mitx[0]) is not None, 1.0, "the new grant did not reach the publisher within 1 s")
    published = [backend.send(event) for event in mitx[1:]]
    dropped = [backend.send(event) for event in others]
    assert all(published)
    assert dropped == [None] * len(others)
    assert stream.xlen(stream_key) == before + len(mitx)


def test_events_without_a_learner_are_dropped_and_counted(redis_server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False)
    event = SimulatedLMS(seed=32).next_event()
    del event["context"]["user_id"]
    event["data"].pop("user_id", None)
    assert backend.send(event) is None
    assert backend.counts["no_user"] == 1
    assert redis.Redis.from_url(redis_server.url).xlen(rkeys.stream_key(rkeys.Prefix(prefix))) == 0
