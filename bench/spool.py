"""Cost of `RealtimeBackend.send` while Redis is down (the event goes to the spool), against a healthy send.

    python -m bench.spool [--events 20000]

Starts a private redis-server; the baseline is `send` to it while it is healthy. Then the server
stops: every event is appended to the spool file. Then it restarts: the flush rate (events per
second written back, in order) is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import redis

from bench.publisher import timed
from hub.dev.embedded import EmbeddedRedis
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys
from rthub_lms.backend import RealtimeBackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    lms = SimulatedLMS(seed=8)
    events = [lms.next_event() for _ in range(args.events)]
    with tempfile.TemporaryDirectory(prefix="rthub-bench-spool-") as spool, EmbeddedRedis() as server:
        backend = RealtimeBackend(redis_url=server.url, redis_prefix="bench:", preemptive=False, spool_path=spool)
        healthy = timed(backend.send, events)
        port = server.port
        server.__exit__(None, None, None)
        spooled = timed(backend.send, events)
        assert backend.counts["spooled"] == args.events, backend.counts
        restarted = EmbeddedRedis()
        restarted.port, restarted.url = port, server.url
        with restarted:
            started = time.perf_counter()
            while backend.counts["flushed"] < args.events:
                time.sleep(0.01)
            flush_seconds = time.perf_counter() - started
            assert redis.Redis.from_url(server.url).xlen(keys.stream_key(keys.Prefix("bench:"))) == args.events
        backend.close()
    baseline = statistics.median(healthy)
    print(f"{'':<32}{'median µs':>10}{'p99 µs':>10}{'max µs':>10}{'÷ healthy':>10}")
    for name, samples in (("send, Redis healthy (baseline)", healthy), ("send, Redis down (spooled)", spooled)):
        p99 = statistics.quantiles(samples, n=100)[98]
        median = statistics.median(samples)
        print(f"{name:<32}{median:>10.1f}{p99:>10.1f}{max(samples):>10.1f}{median / baseline:>10.2f}")
    print(f"flush after restart: {args.events} events in {flush_seconds:.2f}s ({args.events / flush_seconds:,.0f}/s)")


if __name__ == "__main__":
    main()
