"""Redis unreachable from the LMS: `send` stays fast, events wait in the spool and arrive in order later."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from rthub_lms.spool import Spool
from tests.hubproc import ROOT
from tests.servers import RedisServer
from tests.waiting import wait_until

PREFIX = "spool:"


def _event(seq: int, padding: int = 0) -> dict:
    return {
        "name": "problem_check",
        "timestamp": "2026-11-25T10:00:00+00:00",
        "data": {"seq": seq, "pad": "x" * padding},
        "context": {"user_id": 7, "course_id": "course-v1:MITx+6.002x+2026_T1"},
    }


def _stream_seqs(server: RedisServer) -> list[int]:
    rows = server.client().xrange(rkeys.stream_key(rkeys.Prefix(PREFIX)))
    return [orjson.loads(fields[b"e"])["data"]["seq"] for _, fields in rows]


def _wait_for(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, "condition not reached in time")


def _backend(server: RedisServer, spool: Path, **options: object) -> RealtimeBackend:
    return RealtimeBackend(
        redis_url=server.url, redis_prefix=PREFIX, preemptive=False, spool_path=str(spool), **options
    )


def test_events_sent_while_redis_is_down_arrive_in_order_after_it_returns(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    backend = _backend(own_redis, tmp_path / "spool")
    assert backend.send(_event(0)) is not None
    own_redis.stop(kill=True)
    slowest = 0.0
    for seq in range(1, 301):
        started = time.perf_counter()
        assert backend.send(_event(seq)) is None
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.5, f"a send with Redis down took {slowest:.3f}s"
    assert backend.counts["spooled"] == 300
    own_redis.start()
    # Sent while the backlog drains: they must queue behind it, never overtake it.
    for seq in range(301, 321):
        backend.send(_event(seq))
    _wait_for(lambda: backend.counts["flushed"] + backend.counts["published"] == 321)
    assert _stream_seqs(own_redis) == list(range(321))
    assert backend.counts["spool_dropped"] == 0
    assert backend.send(_event(321)) is not None, "once drained, sends go straight to Redis again"
    backend.close()


def test_without_a_spool_the_circuit_breaker_keeps_sends_fast(own_redis: RedisServer) -> None:
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=PREFIX, preemptive=False, spool_max_bytes=0)
    assert backend.send(_event(0)) is not None
    own_redis.stop(kill=True)
    started = time.perf_counter()
    first = backend.send(_event(1))
    first_took = time.perf_counter() - started
    assert first is None
    assert first_took < 0.5, f"the first failing send took {first_took:.3f}s (redis-py retries?)"
    assert [backend.send(_event(n)) for n in range(2, 102)] == [None] * 100
    assert backend.counts["unavailable"] == 101
    assert backend.counts["spooled"] == 0


def test_a_full_spool_drops_the_oldest_events_and_counts_them(own_redis: RedisServer, tmp_path: Path) -> None:
    backend = _backend(own_redis, tmp_path / "spool", spool_max_bytes=64 * 1024)
    own_redis.stop(kill=True)
    sent = 1000
    for seq in range(sent):
        backend.send(_event(seq, padding=400))
    dropped = backend.counts["spool_dropped"]
    assert 0 < dropped < sent
    assert sum(path.stat().st_size for path in (tmp_path / "spool").rglob("*.seg")) <= 64 * 1024
    own_redis.start()
    _wait_for(lambda: backend.counts["flushed"] == sent - dropped)
    assert _stream_seqs(own_redis) == list(range(dropped, sent)), "kept: the newest events, in order"
    backend.close()


LMS_WORKER = """
import os, sys
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
backend = RealtimeBackend(redis_url=sys.argv[1], redis_prefix=sys.argv[2], preemptive=False, spool_path=sys.argv[3])
first, count = int(sys.argv[4]), int(sys.argv[5])
for seq in range(first, first + count):
    backend.send({"name": "problem_check", "timestamp": "2026-11-25T10:00:00+00:00",
                  "data": {"seq": seq}, "context": {"user_id": 7}})
assert backend.counts["spooled"] == count, backend.counts
print("spooled", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_spooled_events_survive_killed_lms_workers_and_flush_on_the_next_start(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    own_redis.stop(kill=True)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", LMS_WORKER, own_redis.url, PREFIX, str(spool), str(first), "200"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for first in (0, 1000)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "spooled"
        assert len([p for p in spool.iterdir() if p.is_dir()]) == 2, "one spool directory per worker process"
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
    own_redis.start()
    backend = _backend(own_redis, spool)
    assert backend.send(_event(5000)) is None, "a new worker queues behind the orphans it adopts"
    _wait_for(lambda: len(_stream_seqs(own_redis)) == 401)
    seqs = _stream_seqs(own_redis)
    assert [s for s in seqs if s < 1000] == list(range(200))
    assert [s for s in seqs if 1000 <= s < 2000] == list(range(1000, 1200))
    assert seqs[-1] == 5000, "the orphans' older events go first"
    backend.close()
    assert not [p for p in spool.iterdir() if any(p.glob("*.seg"))], "nothing left behind"


def test_a_live_process_spool_is_never_adopted(tmp_path: Path) -> None:
    owner = Spool(tmp_path, max_bytes=1 << 20)
    owner.append(b"mine")
    other = Spool(tmp_path, max_bytes=1 << 20)
    assert not other.has_orphans()
    owner.close()
    assert other.has_orphans(), "a released lock with events left makes an orphan"


@pytest.mark.parametrize("torn", [1, 3, 9])
def test_a_record_torn_by_a_crash_ends_the_orphan_cleanly(tmp_path: Path, torn: int) -> None:
    owner = Spool(tmp_path, max_bytes=1 << 20)
    for n in range(3):
        owner.append(f"event-{n}".encode())
    segment = next(owner.home.glob("*.seg"))
    with segment.open("ab") as handle:
        handle.write(b"\x00\x00\x01\x00partial"[:torn])
    owner.close()
    adopter = Spool(tmp_path, max_bytes=1 << 20)
    read = [payload for orphan in adopter.orphans() for _, batch, _ in orphan.batches(10) for payload in batch]
    assert read == [b"event-0", b"event-1", b"event-2"]
