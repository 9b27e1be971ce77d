"""`rthub backfill`: events/s read, filtered, translated and queued, and end to end into Ralph.

    python -m bench.backfill [--events 30000] [--e2e-events 3000]

A private redis-server and a gzip tracking log of simulated events (half in the tracking log's shape,
half in event-tracking's, one minute apart). Rows, each the median of 3 runs:
1. baseline: the same file gunzipped and each line parsed with orjson, nothing else (the floor any
   reader pays);
2. queue: the backfill's reading stage in this process (`hub.backfill.job._read`: parse, time window,
   grant, anonymise with the live store, translate to xAPI, commit to the client's backfill queue with
   the checkpoint), delivery held, against a grant that lets every event through (the most work); the
   queue is checked to hold exactly one frame per translatable event;
3. end to end, on a smaller plain tracking log (every line as the LMS writes it; the reference reads no
   gzip), each run into a fresh real Ralph LRS (the tests' `RalphServer`, file backend), batches of 100,
   timed from process start to exit:
   - floor: rthub's statements POSTed with httpx, nothing else (what any sender pays this LRS);
   - `rthub backfill` as a subprocess; Ralph is checked to hold exactly the statements it queued;
   - the reference's `transform_tracking_logs` (event-routing-backends, in its own virtualenv, in a minimal
     Django project: `bench/reference_backfill.py`), alternating with rthub's runs;
   then the ratio of the two medians, and which events (by name) only one side stored a statement for.
   If the reference cannot be built or run, its row says why and no ratio is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from bench.reference_backfill import ReferenceFailed, ReferenceProject, Transformed
from hub.anonymise import Anonymiser, RedisIdStore
from hub.backfill import job
from hub.backfill.prepare import Preparer, Window
from hub.backfill.progress import Progress
from hub.backfill.sources import resolve
from hub.backfill.store import Checkpoint, JobStore
from hub.config import Settings
from hub.delivery.webhook.clients import webhook_view
from hub.dev.embedded import EmbeddedRedis
from hub.translate import TranslationSettings
from rthub_lms.grants import compile_grant, validate_grant
from tests.hub.backfill.helpers import history, tracking_log, write_log
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hub.translate.oracle import OracleUnavailable

RUNS = 3
BATCH = 100


@dataclass(frozen=True)
class Stored:
    """One end-to-end run: seconds from process start to exit, and every statement Ralph then holds."""

    seconds: float
    statements: list[dict]


def baseline(log: Path) -> float:
    """Lines per second: gunzip and orjson-parse every line."""
    started = time.perf_counter()
    count = 0
    with gzip.open(log, "rb") as stream:
        for line in stream:
            orjson.loads(line)
            count += 1
    return count / (time.perf_counter() - started)


class HeldDelivery:
    """Delivery held: the reading stage alone is timed."""

    def __init__(self) -> None:
        self.progressed = asyncio.Event()
        self.delivered = self.rejected = 0

    def wake(self) -> None:
        pass


async def queue_rate(settings: Settings, client_id: str, log: Path) -> tuple[float, int]:
    """Events per second through the reading stage, and how many the queue holds after it."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        client = await ClientRegistry(redis, settings).get(client_id)
        assert client is not None
        view = webhook_view(client, settings)
        assert view is not None
        store = JobStore(redis, settings, client_id)
        checkpoint = Checkpoint(job="bench", spec={}, files=resolve([str(log)]))
        await store.begin(checkpoint)
        preparer = Preparer(compile_grant(validate_grant(client.grant)), client.translator, Window(),
                            TranslationSettings(settings.lms_root_url, settings.transformer_version))
        preparer.tally = checkpoint.tally
        anonymiser = Anonymiser(RedisIdStore(redis, settings))
        progress = Progress(checkpoint.files, False)
        started = time.perf_counter()
        await job._read(checkpoint, store, preparer, anonymiser, view, HeldDelivery(), progress, None)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        queued = await store.queued()
        assert queued == checkpoint.seq == preparer.tally.total("queued"), "lost or duplicated in the queue"
        await store.finish()
        return queued / elapsed, queued
    finally:
        await redis.aclose()


async def create(settings: Settings, **fields: object) -> str:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        client, _ = await ClientRegistry(redis, settings).create(
            name="bench", type="enterprise", translator="xapi", grant=[{}], **fields)
        return client.client_id
    finally:
        await redis.aclose()


def rthub_into_ralph(settings: Settings, env: dict[str, str], log: Path, directory: Path) -> Stored:
    """`rthub backfill` as a subprocess into a fresh Ralph; Ralph must hold exactly what it queued."""
    ralph = RalphServer(directory)
    ralph.start()
    try:
        lrs = asyncio.run(create(
            settings, delivery="lrs", endpoint_url=ralph.endpoint, endpoint_username=ralph.username,
            endpoint_password=ralph.password, webhook_batch_max=BATCH))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hub.cli", "backfill", "--client", lrs, "--quiet", str(log)],
                              env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        stored = ralph.statements()
        queued = int(done.stderr.split("queued ")[1].split(",")[0])
        assert len(stored) == queued, f"Ralph holds {len(stored)} statements, the backfill queued {queued}"
        return Stored(elapsed, stored)
    finally:
        ralph.stop()


def reference_into_ralph(project: ReferenceProject, log: Path, directory: Path) -> tuple[Stored, Transformed]:
    """The reference's `transform_tracking_logs` into a fresh Ralph (`bench/reference_backfill.py`)."""
    ralph = RalphServer(directory)
    ralph.start()
    try:
        project.route_to(ralph.endpoint, ralph.username, ralph.password)
        done = project.transform(log, BATCH)
        return Stored(done.seconds, ralph.statements()), done
    finally:
        ralph.stop()


def ralph_floor(statements: list[dict], directory: Path) -> float:
    """Seconds to POST these statements in batches to a fresh Ralph with httpx, nothing else: what any
    sender pays this LRS (Ralph's own additions, `stored` and `authority`, taken off)."""
    ralph = RalphServer(directory)
    ralph.start()
    try:
        bare = [{k: v for k, v in statement.items() if k not in ("stored", "authority")} for statement in statements]
        started = time.perf_counter()
        with httpx.Client(auth=(ralph.username, ralph.password), timeout=60,
                          headers={"X-Experience-API-Version": "1.0.3"}) as client:
            for first in range(0, len(bare), BATCH):
                client.post(f"{ralph.endpoint}statements", json=bare[first:first + BATCH]).raise_for_status()
        elapsed = time.perf_counter() - started
        assert len(ralph.statements()) == len(statements), "Ralph did not store every statement"
        return elapsed
    finally:
        ralph.stop()


def end_to_end(settings: Settings, env: dict[str, str], tmp: Path, events: int) -> str:
    """Both commands and the floor on the same plain tracking log (the reference reads no gzip), taking
    turns (machine noise falls on all three), 3 runs each, every run into a fresh Ralph; the report
    compares what each stored."""
    lines = tracking_log(events, seed=9, lms_root_url=settings.lms_root_url)
    (tmp / "logs").mkdir()
    log = write_log(tmp / "logs" / "tracking.log", lines)
    why = ""
    try:
        project: ReferenceProject | None = ReferenceProject(tmp / "reference", settings.lms_root_url)
    except (OracleUnavailable, ReferenceFailed) as exc:
        project, why = None, str(exc)
    ours: list[Stored] = []
    theirs: list[tuple[Stored, Transformed]] = []
    floors: list[float] = []
    for run in range(RUNS):
        ours.append(rthub_into_ralph(settings, env, log, tmp / f"ralph-rthub-{run}"))
        floors.append(ralph_floor(ours[-1].statements, tmp / f"ralph-floor-{run}"))
        if project is not None:
            try:
                theirs.append(reference_into_ralph(project, log, tmp / f"ralph-reference-{run}"))
            except ReferenceFailed as exc:
                project, why = None, str(exc)
    for stored in (ours, [s for s, _ in theirs]):
        assert len({len(run.statements) for run in stored}) <= 1, "a run stored a different number of statements"
        assert all(len({s["id"] for s in run.statements}) == len(run.statements) for run in stored), "duplicate ids"
    mine = statistics.median(run.seconds for run in ours)
    stored = len(ours[0].statements)
    floor = statistics.median(floors)
    report = [f"floor     httpx POSTs -> Ralph         {stored / floor:>10,.0f} statements/s  "
              f"(rthub's {stored:,} statements in batches of {BATCH} in {floor:.2f}s: Ralph's own cost)",
              f"e2e       rthub backfill -> Ralph      {stored / mine:>10,.0f} statements/s  "
              f"({stored:,} statements from {events:,} lines in {mine:.2f}s, process start included)"]
    if project is None or len(theirs) < RUNS:
        report.append(f"reference transform_tracking_logs -> Ralph: could not be run:\n{why}")
        return "\n".join(report)
    reference = statistics.median(run.seconds for run, _ in theirs)
    first, summary = theirs[0]
    count = len(first.statements)
    report.append(f"reference transform_tracking_logs -> Ralph {count / reference:>5,.0f} statements/s  "
                  f"({count:,} statements in {reference:.2f}s, process start included; "
                  f"it queued {summary.queued:,} lines, could not parse {summary.unparsable:,}, skipped "
                  f"{summary.skipped:,})")
    report.append(f"ratio     rthub backfill is {reference / mine:.1f}x the reference's speed on the same file "
                  f"(goal 10x; the most any sender could reach on this LRS, the reference against the floor: "
                  f"{reference / floor:.1f}x)")
    report.append(f"compare   {compare(lines, ours[0].statements, first.statements)}")
    return "\n".join(report)


def compare(lines: list[dict], ours: list[dict], theirs: list[dict]) -> str:
    """Which events (by name) only one side stored a statement for, matched on the event's time."""
    names = {datetime.fromisoformat(line["time"]): line["name"] for line in lines}

    def events(statements: list[dict]) -> set[datetime]:
        return {datetime.fromisoformat(statement["timestamp"]) for statement in statements}

    only_ours = Counter(names[at] for at in events(ours) - events(theirs))
    only_theirs = Counter(names[at] for at in events(theirs) - events(ours))
    return (f"statements stored: rthub {len(ours):,}, reference {len(theirs):,}; events only rthub stored: "
            f"{dict(only_ours) or 'none'}; only the reference: {dict(only_theirs) or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--e2e-events", type=int, default=3_000)
    args = parser.parse_args()
    job.QUEUE_CAP = 10**9  # delivery is held: the queue may hold the whole file
    with tempfile.TemporaryDirectory(prefix="rthub-bench-backfill-") as tmp, EmbeddedRedis() as redis_server:
        env = {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": "bench:",
               "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_DATA_DIR": str(Path(tmp) / "data")}
        settings = Settings.from_env(env)
        log = write_log(Path(tmp) / "tracking.log.gz", history(args.events, seed=7))
        base = statistics.median(baseline(log) for _ in range(RUNS))
        print(f"baseline  gunzip + orjson.loads      {base:>10,.0f} lines/s")
        hook = asyncio.run(create(settings, delivery="webhook", webhook_url="http://127.0.0.1:9/unused"))
        runs = [asyncio.run(queue_rate(settings, hook, log)) for _ in range(RUNS)]
        rate = statistics.median(r for r, _ in runs)
        print(f"queue     read+filter+translate+queue {rate:>10,.0f} events/s  ({rate / base:.2f}x baseline; "
              f"{runs[0][1]:,} of {args.events:,} events queued each run; goal 5,000)")

        print(end_to_end(settings, env, Path(tmp), args.e2e_events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
