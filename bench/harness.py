"""The measuring harness shared by every target (the hub, the bare loop): servers, traffic, rounds, numbers.

A target is a server process listening for WebSockets and reading the live channel of one Redis.
The harness connects the same subscribers to it, publishes the same traffic through
`RealtimeBackend` at a fixed rate, and joins the publisher's cursor -> send-time table with the
subscribers' cursor -> receive-time records afterwards, so nothing about timing has to survive
translation. Entitlement: subscriber i sees course i % COURSE_COUNT, i.e. 1/COURSE_COUNT of the
events: on the hub through a real OAuth client whose grant is that course (bench.oauth), on the bare
loop through a `subscribe` filter naming it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from bench.cpuquota import CpuQuota
from bench.oauth import course_tokens
from bench.subscribers import SubscriberPool
from hub.dev.simulator import Learner, SimulatedLMS
from rthub_lms.backend import RealtimeBackend

COURSE_COUNT = 10
COURSES = tuple(f"course-v1:BenchX+C{index:02d}+2026" for index in range(COURSE_COUNT))
BARE_TOKEN = "bare-loop-takes-any-token"
PREFIX = "bench:"  # each target adds its own part
LOSS_WAIT = 5.0


def course_filter(index: int) -> dict[str, list[str]]:
    return {"courses": [COURSES[index % COURSE_COUNT]]}


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Simulator-shaped events spread evenly at random over COURSE_COUNT courses, 5 learners each."""
    learners = [
        Learner(1000 + index, f"learner{index}", COURSES[index % COURSE_COUNT]) for index in range(5 * COURSE_COUNT)
    ]
    lms = SimulatedLMS(seed=seed, learners=learners)
    return [lms.next_event() for _ in range(count)]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU time of one process so far."""
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class Target:
    """One server under test, run as a subprocess so its CPU and memory can be read with psutil."""

    name: str
    argv: list[str]
    port: int
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    oauth: bool = False
    process: subprocess.Popen[bytes] | None = None
    tokens: list[str] = field(default_factory=lambda: [BARE_TOKEN])
    workers: int = 1
    cores: frozenset[int] | None = None  # its process tree's CPU affinity (`Cores.target`); None: any
    cpu_share: float | None = None  # its process tree's CPU budget, in cores (`CpuQuota`); None: unlimited
    quota: CpuQuota | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/events"

    def __enter__(self) -> Target:
        if self.cpu_share is not None:
            self.quota = CpuQuota(self.name.replace(" ", "-"), self.cpu_share)
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env})
        # Before it starts workers or a render stage: they inherit both.
        if self.cores is not None:
            os.sched_setaffinity(self.process.pid, self.cores)
        if self.quota is not None:
            self.quota.add(self.process.pid)
        wait_for_port(self.port, self.process)
        if self.oauth:
            self.tokens = course_tokens(f"http://127.0.0.1:{self.port}", self.env["RTHUB_REDIS_URL"],
                                        self.prefix, COURSES)
        return self

    def subscriber(self, index: int) -> tuple[str, dict[str, list[str]] | None]:
        """Token and `subscribe` filter of subscriber `index`: hub, a client granted one course; bare loop, a filter."""
        if self.oauth:
            return self.tokens[index % len(self.tokens)], None
        return self.tokens[0], course_filter(index)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.quota is not None:
            self.quota.remove()

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss(self) -> int:
        return sum(proc.memory_info().rss for proc in self.tree())

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(proc) for proc in self.tree())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds so far per role in the process tree: supervisor (the root, with several
        workers), worker(s), render stage."""
        tree = self.tree()
        seconds: dict[str, float] = {}
        for index, proc in enumerate(tree):
            if "hub.render_stage" in " ".join(proc.cmdline()):
                role = "render stage"
            else:
                role = "supervisor" if index == 0 and len(tree) > 1 else "workers"
            seconds[role] = seconds.get(role, 0.0) + cpu_seconds(proc)
        return seconds

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.tree()]


@dataclass(frozen=True)
class Cores:
    """Where things run: the target on `target`, everything else (this process, the Redis it starts,
    the subscriber processes, the publisher) on `load`."""

    load: frozenset[int]
    target: frozenset[int]

    def describe(self) -> str:
        return (f"target on CPU {_cpu_list(self.target)}; harness, Redis, publisher and subscribers "
                f"on CPU {_cpu_list(self.load)}")


def _cpu_list(cores: frozenset[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))


def isolate(target_count: int) -> Cores | None:
    """Give the target `target_count` cores of its own and move this process (and so every child it
    starts from now on) to the others; None, changing nothing, when that would leave no core for either.

    A server measured on the cores its own load generator runs on waits in the run queue behind it:
    on the 2-core VM the hub spent 25-42 % of its running time runnable but not running
    (/proc/PID/schedstat) against the bare loop's 5-8 %, since it uses more CPU, and that wait,
    not its own work, set its p99. In production the clients are elsewhere.
    """
    cores = sorted(os.sched_getaffinity(0))
    if target_count <= 0 or target_count >= len(cores):
        return None
    placement = Cores(frozenset(cores[:-target_count]), frozenset(cores[-target_count:]))
    os.sched_setaffinity(0, placement.load)
    return placement


def hub_target(redis_url: str, port: int, workers: int) -> Target:
    """`rthub serve --workers N` on its own key prefix, so targets sharing one Redis never see each other's events."""
    prefix = f"{PREFIX}hub{workers}:"
    data_dir = tempfile.mkdtemp(prefix="rthub-bench-keys-")
    argv = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--workers", str(workers),
            "--log-level", "warning"]
    # Thousands of subscribers share COURSE_COUNT clients here: lift the per-client socket limit.
    env = {"RTHUB_REDIS_URL": redis_url, "RTHUB_REDIS_PREFIX": prefix, "RTHUB_ISSUER": f"http://127.0.0.1:{port}",
           "RTHUB_DATA_DIR": data_dir, "RTHUB_WS_MAX_SOCKETS_PER_CLIENT": "0"}
    return Target(f"hub x{workers}", argv, port, prefix, env, oauth=True, workers=workers)


def bare_target(redis_url: str, port: int) -> Target:
    prefix = f"{PREFIX}bare:"
    argv = [sys.executable, "-m", "bench.bare_loop", "--redis-url", redis_url, "--prefix", prefix,
            "--port", str(port)]
    return Target("bare loop", argv, port, prefix)


@dataclass
class Sent:
    """The publisher's side of a round: cursor -> (send time, course index)."""

    times: dict[str, float]
    courses: dict[str, int]
    seconds: float
    failed: int


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the harness's own garbage collector out of a round, as `timeit` does.

    A full collection in the publisher (its cursor tables grow by one entry per event) took 30-67 ms
    here: the events due meanwhile then go out in one burst, and the target's latency is charged
    with the harness's pause. The collection runs after the round instead.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


def publish(backend: RealtimeBackend, events: list[dict[str, Any]], rate: float) -> Sent:
    """Send `events` at `rate` per second on an absolute schedule (late sends do not shift later ones)."""
    course_index = {course: index for index, course in enumerate(COURSES)}
    times: dict[str, float] = {}
    courses: dict[str, int] = {}
    failed = 0
    clock = time.perf_counter
    start = clock()
    for number, event in enumerate(events):
        delay = start + number / rate - clock()
        if delay > 0:
            time.sleep(delay)
        before = clock()
        cursor = backend.send(event)
        if cursor is None:
            failed += 1
            continue
        times[cursor] = before
        courses[cursor] = course_index[event["context"]["course_id"]]
    return Sent(times, courses, clock() - start, failed)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cursor_of(message: bytes | str) -> str:
    return orjson.loads(message)["cursor"]


def expected_frames(sent: Sent, subscribers: int) -> int:
    per_course = [0] * COURSE_COUNT
    for course in sent.courses.values():
        per_course[course] += 1
    return sum(per_course[index % COURSE_COUNT] for index in range(subscribers))


def analyse(sent: Sent, frames: list[tuple[int, bytes | str, float]], subscribers: int,
            ignore: set[str]) -> dict[str, Any]:
    """Join send and receive times; count lost, duplicated and unexpected (outside the entitlement) frames."""
    seen: set[tuple[int, str]] = set()
    latencies: list[float] = []
    duplicates = unexpected = size = 0
    for index, message, received in frames:
        cursor = cursor_of(message)
        if cursor in ignore:
            continue
        size += len(message)
        if cursor not in sent.times or sent.courses[cursor] != index % COURSE_COUNT:
            unexpected += 1
            continue
        if (index, cursor) in seen:
            duplicates += 1
            continue
        seen.add((index, cursor))
        latencies.append((received - sent.times[cursor]) * 1000)
    expected = expected_frames(sent, subscribers)
    latencies.sort()
    return {
        "events": len(sent.times),
        "publish_failed": sent.failed,
        "publish_rate": len(sent.times) / sent.seconds if sent.seconds else 0.0,
        "expected_frames": expected,
        "delivered_frames": len(latencies),
        "frames_per_s": len(latencies) / sent.seconds if sent.seconds else 0.0,
        "lost": expected - len(latencies),
        "duplicated": duplicates,
        "unexpected": unexpected,
        "mean_frame_bytes": size / len(frames) if frames else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
    }


def warm_up(pool: SubscriberPool, backend: RealtimeBackend, subscribers: int) -> set[str]:
    """Publish events from every simulated learner until the subscribers have had them; returns cursors to ignore.

    Makes sure the target's live subscription is up and its anonymiser has met every learner (a
    first meeting costs a Redis round trip) before measuring starts.
    """
    ignore: set[str] = set()
    events = make_events(40 * COURSE_COUNT, seed=1)
    for _ in range(10):
        sent = publish(backend, events, 2000)
        ignore.update(sent.times)
        if pool.wait_for(expected_frames(sent, subscribers), 3.0):
            time.sleep(0.2)
            pool.collect()
            return ignore
    raise RuntimeError("subscribers did not receive the warm-up events")


def run_round(target: Target, pool: SubscriberPool, backend: RealtimeBackend, events: list[dict[str, Any]],
              rate: float, subscribers: int, ignore: set[str]) -> dict[str, Any]:
    """One fixed-rate round against a running target and connected pool.

    The round's cursors are added to `ignore`, so frames that straggle in after it ends are not
    mistaken for unexpected ones in the next round (they were already counted as lost).
    """
    cpu_before = target.cpu_seconds()
    roles_before = target.cpu_by_role()
    throttled_before = target.quota.throttled_seconds() if target.quota else 0.0
    outcomes_before = dict(backend.counts)
    clients_before = pool.cpu_seconds()
    publisher_before = time.process_time()
    psutil.cpu_percent()
    wall_before = time.perf_counter()
    with collector_paused():
        sent = publish(backend, events, rate)
        pool.wait_for(expected_frames(sent, subscribers), LOSS_WAIT)
        wall = time.perf_counter() - wall_before
    cpu = target.cpu_seconds() - cpu_before
    throttled = target.quota.throttled_seconds() - throttled_before if target.quota else 0.0
    roles = {role: 100 * (seconds - roles_before.get(role, 0.0)) / wall
             for role, seconds in target.cpu_by_role().items()}
    machine = psutil.cpu_percent()
    clients = pool.cpu_seconds() - clients_before
    publisher = time.process_time() - publisher_before
    collected = pool.collect()
    result = analyse(sent, collected.frames, subscribers, ignore)
    ignore.update(sent.times)
    result.update(
        target=target.name,
        rate=rate,
        subscribers=subscribers,
        cpu_percent=100 * cpu / wall,
        cpu_percent_by_role=roles,
        cpu_share=target.cpu_share,
        throttled_percent=100 * throttled / wall,
        cpu_us_per_frame=1e6 * cpu / result["delivered_frames"] if result["delivered_frames"] else float("nan"),
        subscribers_cpu_percent=100 * clients / wall,
        publisher_cpu_percent=100 * publisher / wall,
        machine_cpu_percent=machine,
        rss_mb=target.rss() / 2**20,
        closed=len(collected.closes),
        close_codes=sorted({code for _, code in collected.closes if code is not None}),
        publish_outcomes={key: count - outcomes_before.get(key, 0) for key, count in backend.counts.items()
                          if count != outcomes_before.get(key, 0)},
    )
    return result


def sustainable(result: dict[str, Any], p99_limit_ms: float) -> bool:
    return (result["lost"] == 0 and result["duplicated"] == 0 and result["unexpected"] == 0
            and result["closed"] == 0 and result["publish_failed"] == 0 and result["p99_ms"] <= p99_limit_ms)
