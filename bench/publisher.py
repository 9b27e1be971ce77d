"""Cost of `RealtimeBackend.send` on a healthy loopback Redis, against a bare PING in the same run.

    python -m bench.publisher [--events 20000] [--cluster]

Starts a private redis-server, so nothing else shares it, and registers one client whose grant
admits every event. The baseline is the cheapest possible round trip (PING) over the same kind of
connection; the ratios are what normalising, the preemptive filter, encoding and the atomic
XADD+PUBLISH script cost on top of the network. The last row is an event the filter drops.
`--cluster` repeats the rows on a private three-master Redis Cluster (sharded SPUBLISH) in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hub.dev.embedded import EmbeddedRedis
from hub.dev.simulator import COURSES, SimulatedLMS
from rthub_lms import keys
from rthub_lms.backend import RealtimeBackend
from rthub_lms.connect import connect, discover
from tests.servers import RedisCluster


def timed(call: Callable[[Any], object], items: Iterable[Any]) -> list[float]:
    """Microseconds each call took, one sample per item."""
    samples = []
    for item in items:
        started = time.perf_counter_ns()
        call(item)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def measure(url: str, events: list[dict], unwanted: list[dict]) -> list[tuple[str, list[float]]]:
    """The four rows, on the Redis at `url` (one server or a cluster node)."""
    ping_client = connect(discover(url))
    grant = json.dumps([{"courses": list(COURSES)}])
    ping_client.hset(keys.active_grants_key(keys.Prefix("bench:")), "everything", grant)
    plain = RealtimeBackend(redis_url=url, redis_prefix="bench:", preemptive=False)
    # A hold as large as the run: every filtered-out event is held, none published for a full hold.
    filtered = RealtimeBackend(redis_url=url, redis_prefix="bench:", hold_max_events=len(unwanted) + 1)
    filtered.send(events[0])
    while not filtered._filter.loaded:  # type: ignore[union-attr]
        time.sleep(0.01)
    for backend in (plain, filtered):
        timed(backend.send, events[:1000])
    timed(lambda _: ping_client.ping(), range(1000))
    rows = [
        ("PING round trip (baseline)", timed(lambda _: ping_client.ping(), range(len(events)))),
        ("send, no filter", timed(plain.send, events)),
        ("send, preemptive filter on", timed(filtered.send, events)),
        ("send, event filtered out", timed(filtered.send, unwanted)),
    ]
    filtered.close()  # the hold's last check drops what it still holds
    assert filtered.counts["unwanted"] == len(unwanted), filtered.counts
    assert filtered.counts["published"] == len(events) + 1001, filtered.counts
    plain.close()
    ping_client.close()
    return rows


def report(title: str, rows: list[tuple[str, list[float]]]) -> None:
    baseline = statistics.median(rows[0][1])
    print(f"{title:<30}{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'÷ PING':>8}{'events/s':>10}")
    for name, samples in rows:
        quantiles = statistics.quantiles(samples, n=100)
        median = statistics.median(samples)
        rate = len(samples) / (sum(samples) / 1e6)
        print(f"{name:<30}{median:>10.1f}{quantiles[89]:>10.1f}{quantiles[98]:>10.1f}{median / baseline:>8.2f}"
              f"{rate:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--cluster", action="store_true", help="also measure on a private 3-master Redis Cluster")
    args = parser.parse_args()
    lms = SimulatedLMS(seed=7)
    events = [lms.next_event() for _ in range(args.events)]
    unwanted = [{**event, "context": {**event["context"], "course_id": "course-v1:Nobody+X+Y"}} for event in events]
    with EmbeddedRedis() as server:
        report("one redis-server", measure(server.url, events, unwanted))
    if args.cluster:
        with tempfile.TemporaryDirectory(prefix="rthub-bench-cluster-") as workdir:
            cluster = RedisCluster(Path(workdir))
            try:
                cluster.start()
                report("3-master Redis Cluster", measure(cluster.url, events, unwanted))
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
