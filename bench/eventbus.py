"""Events/s through the event bus ingest against the plug-in's direct path, in the same run.

    python -m bench.eventbus [--events 20000] [--batch 200]

Starts a private redis-server and configures Django in this process as Open edX does for the event bus
(openedx-events + edx-event-bus-redis). The same simulated events then go:
1. direct: `RealtimeBackend.send` (the LMS plug-in) into rthub's stream;
2. bus, LMS side: event-tracking's `EventBusRoutingBackend.send` -> tracking signal -> edx-event-bus-redis,
   i.e. what the LMS request pays to put an event on the bus;
3. bus, ingest: `rthub ingest event-bus` (a subprocess) draining those messages into rthub's stream,
   timed from the first event it appends to the last.
Each row is set against the direct path. Preemptive filtering is off in both, so both carry every event.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import django
import redis
from django.conf import settings

from hub.dev.embedded import EmbeddedRedis
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend

TOPIC = "analytics"


def configure_django(redis_url: str, names: list[str], maxlen: int) -> None:
    settings.configure(
        EVENT_BUS_REDIS_STREAM_MAX_LEN=maxlen,  # the default, 10,000, would trim the bus stream under the bench
        INSTALLED_APPS=["openedx_events"],
        EVENT_BUS_PRODUCER="edx_event_bus_redis.create_producer",
        EVENT_BUS_REDIS_CONNECTION_URL=redis_url,
        EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED=False,
        EVENT_BUS_PRODUCER_CONFIG={
            "org.openedx.analytics.tracking.event.emitted.v1": {
                TOPIC: {"event_key_field": "tracking_log.name", "enabled": True},
            },
        },
        SEND_TRACKING_EVENT_EMITTED_SIGNAL=True,
        EVENT_BUS_TRACKING_LOGS=names,
        LOGGING_CONFIG=None,
    )
    django.setup()


def make_events(count: int) -> list[dict[str, Any]]:
    """Simulated events as the tracker hands them to its backends (the timestamp a datetime)."""
    lms = SimulatedLMS(seed=11)
    events = [lms.next_event() for _ in range(count)]
    for event in events:
        event["timestamp"] = datetime.fromisoformat(event["timestamp"])
    return events


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed_sends(send: Any, events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        send(event)
    return time.perf_counter() - started


def drain(redis_url: str, prefix: str, count: int, batch: int) -> float:
    """Events/s `rthub ingest event-bus` appends, from the first time some are seen to the `count`th."""
    client = redis.Redis.from_url(redis_url)
    argv = [sys.executable, "-m", "hub.cli", "ingest", "event-bus", "--topic", TOPIC, "--group", "bench",
            "--consumer", "bench-1", "--redis-url", redis_url, "--redis-prefix", prefix, "--from-start",
            "--no-preemptive", "--batch", str(batch)]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            appended = client.xlen(f"{prefix}events")
            if appended and first is None:
                first = (time.perf_counter(), appended)
            if appended >= count and first is not None:
                return rate(count - first[1], time.perf_counter() - first[0])
            time.sleep(0.002)
        raise TimeoutError(f"the ingest appended {client.xlen(f'{prefix}events')} of {count} events in 120 s")
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200, help="the ingest's --batch")
    args = parser.parse_args()
    events = make_events(args.events)
    names = sorted({event["name"] for event in events})
    with EmbeddedRedis() as server:
        configure_django(server.url, names, 2 * args.events)
        from eventtracking.backends.event_bus import EventBusRoutingBackend

        # A 1 s timeout, not the LMS default 50 ms: on a loaded machine a stall would open the circuit
        # breaker and the direct path would drop events the bus path carries.
        direct = RealtimeBackend(redis_url=server.url, redis_prefix="bench:direct:", preemptive=False,
                                 spool_max_bytes=0, timeout=1.0)
        bus = EventBusRoutingBackend()
        timed_sends(direct.send, events[:500])  # warm both paths (connections, script load)
        timed_sends(bus.send, events[:500])
        client = redis.Redis.from_url(server.url)
        client.delete("bench:direct:events", TOPIC)
        direct_s = timed_sends(direct.send, events)
        produce_s = timed_sends(bus.send, events)
        assert client.xlen("bench:direct:events") == args.events, direct.counts
        assert client.xlen(TOPIC) == args.events
        ingest_rate = drain(server.url, "bench:bus:", args.events, args.batch)
        direct.close()
    rows = [
        ("direct: RealtimeBackend.send", rate(args.events, direct_s)),
        ("bus, LMS side: EventBusRoutingBackend.send", rate(args.events, produce_s)),
        (f"bus, ingest drain (--batch {args.batch})", ingest_rate),
    ]
    base = rows[0][1]
    print(f"{args.events} events")
    print(f"{'path':<46}{'events/s':>12}{'µs/event':>10}{'÷ direct':>10}")
    for name, per_s in rows:
        print(f"{name:<46}{per_s:>12,.0f}{1e6 / per_s:>10.1f}{per_s / base:>10.2f}")


if __name__ == "__main__":
    main()
