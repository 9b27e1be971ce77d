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
Wall-clock rates move with whatever else the machine runs; the CPU column (the sending process, or the
ingest process, not Redis) moves much less.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import django
import psutil
import redis
from django.conf import settings

from bench.harness import cpu_seconds
from hub.dev.embedded import EmbeddedRedis
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
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


def timed_sends(send: Any, events: list[dict[str, Any]]) -> tuple[float, float]:
    """Events/s, and CPU µs per event of this process."""
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        send(event)
    return rate(len(events), time.perf_counter() - started), (time.process_time() - cpu) / len(events) * 1e6


def drain(redis_url: str, prefix: str, count: int, batch: int) -> tuple[float, float]:
    """Events/s `rthub ingest event-bus` appends, from the first time some are seen to the `count`th, and
    the ingest process's CPU µs per event over the same span."""
    client = redis.Redis.from_url(redis_url)
    argv = [sys.executable, "-m", "hub.cli", "ingest", "event-bus", "--topic", TOPIC, "--group", "bench",
            "--consumer", "bench-1", "--redis-url", redis_url, "--redis-prefix", prefix, "--from-start",
            "--no-preemptive", "--batch", str(batch)]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    watched = psutil.Process(process.pid)
    try:
        deadline = time.monotonic() + 120
        first: tuple[float, float, int] | None = None
        while time.monotonic() < deadline:
            appended = client.xlen(events_key(prefix))
            if appended and first is None:
                first = (time.perf_counter(), cpu_seconds(watched), appended)
            if appended >= count and first is not None:
                done = count - first[2]
                cpu = (cpu_seconds(watched) - first[1]) / done * 1e6
                return rate(done, time.perf_counter() - first[0]), cpu
            time.sleep(0.002)
        raise TimeoutError(f"the ingest appended {client.xlen(events_key(prefix))} of {count} events in 120 s")
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
        rows = [("direct: RealtimeBackend.send", *timed_sends(direct.send, events))]
        rows.append(("bus, LMS side: EventBusRoutingBackend.send", *timed_sends(bus.send, events)))
        assert client.xlen("bench:direct:events") == args.events, direct.counts
        assert client.xlen(TOPIC) == args.events
        rows.append((f"bus, ingest drain (--batch {args.batch})", *drain(server.url, "bench:bus:", args.events,
                                                                          args.batch)))
        direct.close()
    base = rows[0][1]
    print(f"{args.events} events")
    print(f"{'path':<46}{'events/s':>10}{'÷ direct':>10}{'CPU µs/event':>14}")
    for name, per_s, cpu in rows:
        print(f"{name:<46}{per_s:>10,.0f}{per_s / base:>10.2f}{cpu:>14.1f}")


if __name__ == "__main__":
    main()


def events_key(prefix: str) -> str:
    """The event stream's key under a test prefix."""
    return rkeys.stream_key(rkeys.Prefix(prefix))
