"""Real processes for the event bus tests: the producing LMS (tests/hub/eventbus/lms.py) and `rthub ingest`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import orjson
import redis

from rthub_lms import keys as rkeys
from tests import ROOT
from tests.waiting import wait_until


def topic_prefix(prefix: str) -> str:
    """An EVENT_BUS_TOPIC_PREFIX unique to the test, from its rthub key prefix."""
    return "".join(ch if ch.isalnum() else "-" for ch in prefix.strip(":"))


def produce(redis_url: str, prefix: str, count: int, first: int = 0, rate: float | None = None,
            direct_prefix: str | None = None, simulated: int | None = None) -> subprocess.Popen[str]:
    """Start the LMS producing events `first`..`first + count - 1`; `.wait()` it to know they are all sent."""
    argv = [sys.executable, "-m", "tests.hub.eventbus.lms", "--redis-url", redis_url, "--topic", "analytics",
            "--topic-prefix", topic_prefix(prefix), "--count", str(count), "--first", str(first)]
    if rate:
        argv += ["--rate", str(rate)]
    if direct_prefix:
        argv += ["--direct-prefix", direct_prefix]
    if simulated is not None:
        argv += ["--simulated", str(simulated)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def produced(process: subprocess.Popen[str], timeout: float = 60) -> None:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0 and out.startswith("sent"), out


class Ingest:
    """`rthub ingest event-bus` in a subprocess, on the test's prefix and topic."""

    def __init__(self, redis_url: str, prefix: str, *extra: str, consumer: str = "ingest-1",
                 from_start: bool = True) -> None:
        self.argv = [
            sys.executable, "-m", "hub.cli", "ingest", "event-bus", "--topic", "analytics",
            "--topic-prefix", topic_prefix(prefix), "--group", "rthub", "--consumer", consumer,
            "--redis-url", redis_url, "--redis-prefix", prefix, *(["--from-start"] if from_start else []), *extra,
        ]
        self.process: subprocess.Popen[str] | None = None
        self._read: list[str] = []

    def wait_for_line(self, text: str, timeout: float) -> None:
        """Read its stderr until a line contains `text` (kept for `stop`'s answer); fail after `timeout` s
        (checked between lines: the ingest prints its filter line within seconds of starting, or exits)."""
        assert self.process is not None and self.process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self._read.append(line)
            if text in line:
                return
        raise AssertionError(f"the ingest never printed {text!r}: {''.join(self._read)}")

    def start(self) -> Ingest:
        self.process = subprocess.Popen(self.argv, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def stop(self) -> str:
        """SIGTERM, wait for a clean exit, return what it printed (its closing line has the counts)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=15)
        err = "".join(self._read) + err
        code = self.process.returncode
        self.process = None
        assert code == 0, err
        return err

    def __enter__(self) -> Ingest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


def rthub_events(client: redis.Redis, prefix: str) -> list[dict]:
    """Every event in rthub's stream under `prefix`, oldest first."""
    return [orjson.loads(fields[b"e"]) for _, fields in client.xrange(events_key(prefix))]


def seqs(events: list[dict]) -> list[int]:
    return [event["data"]["seq"] for event in events]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(predicate, timeout, f"not reached: {what}")


def events_key(prefix: str) -> str:
    """The event stream's key under a test prefix."""
    return rkeys.stream_key(rkeys.Prefix(prefix))
