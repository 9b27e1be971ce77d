"""The spool on a shared host. It held learner PII under a predictable /tmp name with
default modes, and adopted (re-published) orphan directories from any owner."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
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

PREFIX = "spoolsec:"
NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="planting files of another user needs root")

LMS_WORKER = """
import sys
from rthub_lms.backend import RealtimeBackend
backend = RealtimeBackend(redis_url=sys.argv[1], redis_prefix=sys.argv[2], preemptive=False)
event = {"name": "problem_check", "timestamp": "2026-11-25T10:00:00+00:00", "data": {},
         "context": {"user_id": 7, "username": "ada", "course_id": "course-v1:MITx+6.002x+2026_T1"}}
assert backend.send(event) is None and backend.counts["spooled"] == 1, backend.counts
print(backend._spool_dir, flush=True)
"""


def _event(seq: int) -> dict:
    return {
        "name": "problem_check",
        "timestamp": "2026-11-25T10:00:00+00:00",
        "data": {"seq": seq},
        "context": {"user_id": 7, "course_id": "course-v1:MITx+6.002x+2026_T1"},
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_default_spool_is_a_private_directory_in_the_users_state_dir(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    own_redis.stop(kill=True)
    home = tmp_path / "home"
    home.mkdir()
    digest = hashlib.sha256(f"{own_redis.url}\n{PREFIX}".encode()).hexdigest()[:8]
    old_default = Path(tempfile.gettempdir()) / f"rthub-spool-{PREFIX.replace(':', '_')}{digest}"
    env = {k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"} | {"HOME": str(home), "PYTHONPATH": str(ROOT)}
    worker = subprocess.run(
        [sys.executable, "-c", LMS_WORKER, own_redis.url, PREFIX], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, umask=0o022,
    )
    assert worker.returncode == 0, worker.stderr
    spool = Path(worker.stdout.strip())
    assert spool.parent == home / ".local" / "state" / "rthub", spool
    assert not old_default.exists(), "nothing under the predictable /tmp name used before"
    process_dirs = [p for p in spool.iterdir() if p.is_dir()]
    segments = [s for d in process_dirs for s in d.glob("*.seg")]
    assert process_dirs and segments
    assert _mode(spool) == 0o700 and all(_mode(d) == 0o700 for d in process_dirs)
    assert all(_mode(s) == 0o600 for s in segments), "events carry learner PII: owner-only files despite umask 022"


def test_a_spool_directory_open_to_others_is_refused(own_redis: RedisServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    spool.chmod(0o755)
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=PREFIX, preemptive=False, spool_path=str(spool))
    own_redis.stop(kill=True)
    assert backend.send(_event(1)) is None, "send never raises"
    assert backend.counts["spool_failed"] == 1 and backend.counts["spooled"] == 0
    assert list(spool.iterdir()) == [], "nothing written where others can read it"
    backend.close()


@as_root
@pytest.mark.parametrize("planted", ["foreign directory", "symlink"])
def test_a_directory_planted_by_another_user_is_refused(own_redis: RedisServer, tmp_path: Path, planted: str) -> None:
    spool = tmp_path / "spool"
    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    os.chown(target, NOBODY, NOBODY)
    if planted == "symlink":
        target.chmod(0o777)
        spool.symlink_to(target)
    else:
        os.rename(target, spool)
        target = spool
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=PREFIX, preemptive=False, spool_path=str(spool))
    own_redis.stop(kill=True)
    assert backend.send(_event(1)) is None
    assert backend.counts["spool_failed"] == 1 and backend.counts["spooled"] == 0
    assert list(target.iterdir()) == []
    backend.close()


@as_root
def test_orphans_of_another_user_are_not_adopted(own_redis: RedisServer, tmp_path: Path) -> None:
    """The attack: a local user plants a forged event as a dead process's spool; it must not be published."""
    root = tmp_path / "spool"
    forged = Spool(root, max_bytes=1 << 20)
    forged.append(orjson.dumps({**_event(666), "name": "edx.grades.subsection.grade_calculated"}))
    forged.close()
    for path in (forged.home, *forged.home.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    ours = Spool(root, max_bytes=1 << 20)
    ours.append(orjson.dumps(_event(1)))
    ours.close()
    backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=PREFIX, preemptive=False, spool_path=str(root))
    assert backend.send(_event(2)) is None, "queued behind the orphan it adopts"
    wait_until(lambda: own_redis.client().xlen(rkeys.stream_key(rkeys.Prefix(PREFIX))) >= 2, 15,
               "the orphan and the new event never reached Redis")
    time.sleep(0.3)  # room for a wrongly adopted orphan to show up too
    backend.close()
    rows = own_redis.client().xrange(rkeys.stream_key(rkeys.Prefix(PREFIX)))
    seqs = [orjson.loads(fields[b"e"])["data"]["seq"] for _, fields in rows]
    assert seqs == [1, 2], "our own orphan is adopted, the planted one is not"
    assert any(forged.home.glob("*.seg")), "the planted spool is left alone, not read"
