"""The LMS-side preemptive filter inside `RealtimeBackend`: events nobody may see never reach Redis; events a
change made wanted are held until the filter sees it, never dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from rthub_lms.events import encode, normalise
from tests import ROOT, SEND_TIMEOUT
from tests.hubproc import Hub
from tests.servers import RedisServer
from tests.waiting import wait_until


def _wait_loaded(backend: RealtimeBackend, probe: dict) -> None:
    backend.send(probe)
    wait_until(lambda: backend._filter.loaded, 5, "filter never loaded")  # type: ignore[union-attr]


def _settled(backend: RealtimeBackend, sent: int) -> None:
    """Every event sent has its outcome: published, or dropped for good once the hold's check confirmed it."""
    wait_until(lambda: backend.counts["published"] + backend.counts["unwanted"] == sent, 10,
               f"outcomes never settled: {backend.counts}")
    assert backend._filter.held == 0  # type: ignore[union-attr]


def test_events_nobody_can_see_never_reach_redis_and_a_new_grant_counts_from_its_creation(hub: Hub) -> None:
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
    _settled(backend, 1 + len(events))  # nothing changed: all of them (and the probe) dropped, none written
    assert backend.counts["unwanted"] == 1 + len(events)
    assert stream.xlen(stream_key) == before

    hub.client(grant=[{"courses": ["course-v1:MITx+*"]}])
    for event in mitx + others:  # at once: the filter has not necessarily heard of the new client
        backend.send(event)
    _settled(backend, 1 + len(events) + len(mitx) + len(others))
    assert backend.counts["published"] == len(mitx)
    assert backend.counts["unwanted"] == 1 + len(events) + len(others)
    written = [fields[b"e"] for _, fields in stream.xrange(stream_key)[before:]]
    assert sorted(written) == sorted(encode(normalise(event)) for event in mitx)


def test_events_held_until_a_change_whose_notice_was_lost_is_seen_are_published_in_arrival_order(
    redis_server: RedisServer, prefix: str
) -> None:
    """A client saved as the registry saves it (grant and interest version in one transaction), its change
    notice lost: the events sent after it are held, then published, in the order they were sent."""
    settings = rkeys.Prefix(prefix)
    store = redis_server.client()
    lms = SimulatedLMS(seed=33)
    events = [lms.next_event() for _ in range(60)]
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
    _wait_loaded(backend, events[0])
    _settled(backend, 1)
    with store.pipeline(transaction=True) as pipe:
        pipe.hset(rkeys.active_grants_key(settings), "cl_everything", "[{}]")
        pipe.incr(rkeys.interest_version_key(settings))
        pipe.execute()
    held = [event for event in events[1:] if backend.send(event) is None]
    _settled(backend, len(events))
    assert backend.counts["published"] == len(events) - 1 and held
    written = [fields[b"e"] for _, fields in store.xrange(rkeys.stream_key(settings))]
    order = {payload: index for index, payload in enumerate(written)}
    assert [order[encode(normalise(event))] for event in held] == sorted(order[encode(normalise(e))] for e in held)


def test_a_full_hold_is_checked_at_once_and_published_rather_than_dropped_while_the_check_fails(
    own_redis: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A hold of 5 events checked every 60 s: full, it is checked at once; with Redis away the check fails,
    and the events held at the cap are published (to the spool) instead of dropped unchecked."""
    settings = rkeys.Prefix(prefix)
    lms = SimulatedLMS(seed=34)
    events = [lms.next_event() for _ in range(13)]
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=prefix, timeout=SEND_TIMEOUT,
                              hold=60, hold_max_events=5, spool_path=str(tmp_path / "spool"))
    _wait_loaded(backend, events[0])
    for event in events[1:5]:
        assert backend.send(event) is None
    wait_until(lambda: backend.counts["unwanted"] == 5, 10, "the full hold was not checked at once")
    own_redis.stop()
    for event in events[5:]:
        assert backend.send(event) is None
    wait_until(lambda: backend.counts["spooled"] >= 5, 10, "the full hold's events were not published")
    assert backend.counts["unwanted"] == 5 and backend.counts["spooled"] + backend._filter.held == 8  # type: ignore[union-attr]
    own_redis.restart()
    store = own_redis.client()
    spooled = backend.counts["spooled"]
    wait_until(lambda: store.xlen(rkeys.stream_key(settings)) == spooled, 20, "the spool was not flushed")
    backend.close()
    assert backend.counts["unwanted"] + spooled == len(events)


def test_events_without_a_learner_are_dropped_and_counted(redis_server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False)
    event = SimulatedLMS(seed=32).next_event()
    del event["context"]["user_id"]
    event["data"].pop("user_id", None)
    assert backend.send(event) is None
    assert backend.counts["no_user"] == 1
    assert redis.Redis.from_url(redis_server.url).xlen(rkeys.stream_key(rkeys.Prefix(prefix))) == 0


def test_a_forked_worker_holds_and_settles_its_own_events(redis_server: RedisServer, prefix: str) -> None:
    """A pre-forking LMS: the parent's filter ran before fork(); the worker's events are held and checked by
    threads of the worker's own, so a change whose notice was lost still lets them through."""
    settings = rkeys.Prefix(prefix)
    store = redis_server.client()
    lms = SimulatedLMS(seed=35)
    events = [lms.next_event() for _ in range(20)]
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
    _wait_loaded(backend, events[0])
    _settled(backend, 1)
    with store.pipeline(transaction=True) as pipe:  # a client saved as the registry saves it, notice lost
        pipe.hset(rkeys.active_grants_key(settings), "cl_everything", "[{}]")
        pipe.incr(rkeys.interest_version_key(settings))
        pipe.execute()
    pid = os.fork()
    if pid == 0:  # the worker: exit status 0 once all its events were written
        code = 1
        try:
            for event in events[1:]:
                backend.send(event)
            wait_until(lambda: backend.counts["published"] == len(events) - 1, 10)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the worker's events were not all written"
    written = [fields[b"e"] for _, fields in store.xrange(rkeys.stream_key(settings))]
    assert written == [encode(normalise(event)) for event in events[1:]]
    backend.close()


EXITING_LMS = """
import sys, time
import redis
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend

url, prefix = sys.argv[1], sys.argv[2]
events = [SimulatedLMS(seed=36).next_event() for _ in range(11)]
backend = RealtimeBackend(redis_url=url, redis_prefix=prefix, timeout=2.0, hold=60)
backend.send(events[0])
deadline = time.monotonic() + 10
while not backend._filter.loaded and time.monotonic() < deadline:
    time.sleep(0.01)
with redis.Redis.from_url(url).pipeline(transaction=True) as pipe:  # a new client, its notice lost
    pipe.hset(rkeys.active_grants_key(rkeys.Prefix(prefix)), "cl_everything", "[{}]")
    pipe.incr(rkeys.interest_version_key(rkeys.Prefix(prefix)))
    pipe.execute()
for event in events[1:]:
    backend.send(event)
print(backend._filter.held)
"""


def test_events_held_when_the_lms_process_exits_are_checked_before_it_ends(
    redis_server: RedisServer, prefix: str
) -> None:
    """An LMS process that exits normally (no `close()`) with events held for a 60 s check: the check runs at
    exit, so the events a change made wanted are written (only a SIGKILL loses them)."""
    done = subprocess.run(
        [sys.executable, "-c", EXITING_LMS, redis_server.url, prefix], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lms")])},
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10  # still held when the script ended
    # All 11: the 10 sent after the change and the probe held before it, judged again by the new union.
    assert redis_server.client().xlen(rkeys.stream_key(rkeys.Prefix(prefix))) == 11
