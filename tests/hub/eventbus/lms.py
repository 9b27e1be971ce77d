"""A small LMS for the tests: the real producer chain, from event-tracking to the event bus's Redis stream.

    python -m tests.hub.eventbus.lms --redis-url URL --topic analytics --count N [--first K] [--rate R]
        [--topic-prefix P] [--direct-prefix RTHUB_PREFIX] [--simulated SEED]

Django is configured here as Open edX configures it for the event bus: `openedx_events` installed (its
app connects the tracking signal to the producer), `EVENT_BUS_PRODUCER` = edx-event-bus-redis, and an
event-tracking `Tracker` whose `EventBusRoutingBackend` emits `TRACKING_EVENT_EMITTED`. With
`--direct-prefix` the same tracker also has rthub's `RealtimeBackend` (the plug-in's direct path)
writing under that prefix, so a test can compare both paths event by event. Events are numbered (`seq`
in their data), or with `--simulated` come from the demo's simulated LMS. It prints `sent N` when done.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import django
from django.conf import settings

from hub.dev.simulator import SimulatedLMS
from tests import SEND_TIMEOUT

EVENT_NAMES = (
    "problem_check", "edx.video.played", "edx.course.enrollment.activated", "edx.grades.subsection.grade_calculated",
)
SIMULATED_NAMES = (
    "edx.course.enrollment.activated", "load_video", "play_video", "pause_video", "seek_video", "stop_video",
    "problem_check", "edx.ui.lms.sequence.next_selected",
)
COURSE = "course-v1:BusX+Ingest+2026"


def configure(redis_url: str, topic: str, topic_prefix: str | None) -> None:
    settings.configure(
        INSTALLED_APPS=["openedx_events"],
        EVENT_BUS_PRODUCER="edx_event_bus_redis.create_producer",
        EVENT_BUS_REDIS_CONNECTION_URL=redis_url,
        EVENT_BUS_TOPIC_PREFIX=topic_prefix,
        EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED=False,
        EVENT_BUS_PRODUCER_CONFIG={
            "org.openedx.analytics.tracking.event.emitted.v1": {
                topic: {"event_key_field": "tracking_log.name", "enabled": True},
            },
        },
        SEND_TRACKING_EVENT_EMITTED_SIGNAL=True,
        EVENT_BUS_TRACKING_LOGS=[*EVENT_NAMES, *SIMULATED_NAMES],
    )
    django.setup()


def event(seq: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Name, data and context of the test's event number `seq` (the data carries `seq`)."""
    context = {"user_id": 1000 + seq % 7, "course_id": COURSE, "org_id": "BusX", "username": f"learner{seq % 7}"}
    data = {"seq": seq, "problem_id": f"block-v1:BusX+Ingest+2026+type@problem+block@p{seq % 3}", "grade": seq % 5}
    return EVENT_NAMES[seq % len(EVENT_NAMES)], data, context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--topic", default="analytics")
    parser.add_argument("--topic-prefix")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    parser.add_argument("--direct-prefix", help="also send each event through RealtimeBackend under this prefix")
    parser.add_argument("--simulated", type=int, metavar="SEED", help="emit the simulated LMS's events")
    args = parser.parse_args()
    configure(args.redis_url, args.topic, args.topic_prefix)

    from eventtracking.backends.event_bus import EventBusRoutingBackend
    from eventtracking.tracker import Tracker

    backends: dict[str, Any] = {"event_bus": EventBusRoutingBackend()}
    if args.direct_prefix:
        from rthub_lms.backend import RealtimeBackend

        backends["realtime"] = RealtimeBackend(
            redis_url=args.redis_url, redis_prefix=args.direct_prefix, preemptive=False, spool_max_bytes=0
        , timeout=SEND_TIMEOUT)
    tracker = Tracker(backends=backends)
    simulated = SimulatedLMS(seed=args.simulated) if args.simulated is not None else None
    started = time.monotonic()
    for index in range(args.count):
        if simulated is not None:
            raw = simulated.next_event()
            name, data, context = raw["name"], raw["data"], raw["context"]
        else:
            name, data, context = event(args.first + index)
        with tracker.context("test", context):
            tracker.emit(name, data)
        if args.rate:
            delay = started + (index + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"sent {args.count}", flush=True)


if __name__ == "__main__":
    main()
