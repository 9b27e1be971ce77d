"""Cost of `RealtimeBackend.send` on a healthy loopback Redis, against a bare PING in the same run.

    python -m bench.publisher [--events 20000]

Starts a private redis-server, so nothing else shares it. The baseline is the cheapest possible
round trip (PING) over the same kind of connection; the ratio is what normalising, encoding and the
atomic XADD+PUBLISH script cost on top of the network.
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from hub.embedded import EmbeddedRedis
from hub.publisher import RealtimeBackend
from hub.simulator import SimulatedLMS


def timed(call, items) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for item in items:
        started = time.perf_counter_ns()
        call(item)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    lms = SimulatedLMS(seed=7)
    events = [lms.next_event() for _ in range(args.events)]
    with EmbeddedRedis() as server:
        ping_client = redis.Redis.from_url(server.url)
        backend = RealtimeBackend(redis_url=server.url, redis_prefix="bench:")
        timed(backend.send, events[:1000])
        timed(lambda _: ping_client.ping(), range(1000))
        ping = timed(lambda _: ping_client.ping(), range(args.events))
        send = timed(backend.send, events)
        assert backend.counts["published"] == args.events + 1000, backend.counts
    rows = [("PING round trip (baseline)", ping), ("RealtimeBackend.send", send)]
    print(f"{'':<28}{'median µs':>10}{'p90 µs':>10}{'p99 µs':>10}")
    for name, samples in rows:
        quantiles = statistics.quantiles(samples, n=100)
        print(f"{name:<28}{statistics.median(samples):>10.1f}{quantiles[89]:>10.1f}{quantiles[98]:>10.1f}")
    print(f"send / PING median ratio: {statistics.median(send) / statistics.median(ping):.2f}x")


if __name__ == "__main__":
    main()
