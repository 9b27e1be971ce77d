"""`rthub ingest event-bus`: carry tracking events from the Open edX event bus into rthub's stream."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from types import FrameType

from hub.config import Settings
from rthub_lms.keys import stream_key

EXTRA_HINT = "rthub ingest event-bus needs the eventbus extra: pip install 'rthub[eventbus]'"
FILTER_LOAD_WAIT = 5.0  # seconds the ingest waits, at start, for the preemptive filter to know the grants


def full_topic(topic: str, prefix: str | None) -> str:
    """The stream name edx-event-bus-redis writes a topic to (its `EVENT_BUS_TOPIC_PREFIX` rule)."""
    return f"{prefix}-{topic}" if prefix else topic


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ingest = commands.add_parser("ingest", help="ingest events from another source")
    sources = ingest.add_subparsers(dest="source", required=True, metavar="SOURCE")
    bus = sources.add_parser(
        "event-bus", help="consume the Open edX event bus (edx-event-bus-redis) tracking-event topic",
        description="Reads the topic's Redis stream with a consumer group and appends each tracking event to "
        "rthub's stream, normalised and filtered as the LMS plug-in does; acknowledges only after the append; "
        "dead-letters what it cannot carry to {prefix}{events}:deadletters:eventbus.",
    )
    bus.add_argument("--topic", default="analytics", help="event bus topic (default analytics)")
    bus.add_argument("--topic-prefix", help="the LMS's EVENT_BUS_TOPIC_PREFIX, if it sets one")
    bus.add_argument("--group", default="rthub", help="consumer group (default rthub)")
    bus.add_argument("--consumer", default=socket.gethostname(), help="consumer name in the group (default: host name)")
    bus.add_argument("--bus-url", help="the event bus Redis (EVENT_BUS_REDIS_CONNECTION_URL); default: --redis-url")
    bus.add_argument("--redis-url", help="rthub's Redis (env RTHUB_REDIS_URL)")
    bus.add_argument("--redis-prefix", help="rthub's key prefix (env RTHUB_REDIS_PREFIX, default rthub:)")
    bus.add_argument("--from-start", action="store_true",
                     help="when the group is new, start at the oldest retained message instead of new ones")
    bus.add_argument("--claim-idle-ms", type=int, default=60_000,
                     help="claim other consumers' messages pending longer than this (default 60000)")
    bus.add_argument("--batch", type=int, default=200, help="messages per read (default 200)")
    bus.add_argument("--no-preemptive", action="store_true", help="do not drop events no active grant could match")
    bus.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import redis

        from hub.eventbus.consumer import EventBusIngest, IngestOptions
        from hub.eventbus.decode import TrackingDecoder
        from hub.eventbus.sink import OnceWriter
        from rthub_lms.connect import connect, discover
        from rthub_lms.filter import PreemptiveFilter
    except ImportError as exc:
        print(f"{EXTRA_HINT} ({exc})", file=sys.stderr)
        return 2
    logging.getLogger("rthub").setLevel(logging.INFO)
    settings = Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)
    options = IngestOptions(
        stream=full_topic(args.topic, args.topic_prefix), group=args.group, consumer=args.consumer,
        batch=args.batch, claim_idle_ms=args.claim_idle_ms, start_id="0" if args.from_start else "$",
    )
    # The blocking read must end before the socket times out.
    bus = redis.Redis.from_url(args.bus_url or settings.redis_url, socket_timeout=options.block_ms / 1000 + 5,
                               socket_connect_timeout=2)
    topology = discover(settings.redis_url)
    target = connect(topology, socket_timeout=5, socket_connect_timeout=2)
    wanted = None
    if not args.no_preemptive:
        wanted = PreemptiveFilter(connect(topology, socket_timeout=5), settings)
        wanted.start()
        if wanted.wait_loaded(FILTER_LOAD_WAIT):  # else it fails open: every event passes until it loads
            print("rthub ingest: preemptive filter loaded the active grants", file=sys.stderr, flush=True)
        else:
            print(f"rthub ingest: preemptive filter not loaded after {FILTER_LOAD_WAIT:g} s; passing every event "
                  "until it is", file=sys.stderr, flush=True)
    writer = OnceWriter(target, settings, options.stream, options.group, settings.stream_maxlen)
    ingest = EventBusIngest(bus, writer, options, TrackingDecoder(), wanted)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"rthub ingest: {options.stream} (group {options.group}, consumer {options.consumer}) -> "
          f"{stream_key(settings)}", file=sys.stderr, flush=True)
    ingest.run(stop)
    if wanted is not None:
        wanted.close()
    summary = ", ".join(f"{name} {count}" for name, count in sorted(ingest.counts.items())) or "nothing"
    print(f"rthub ingest: stopped; {summary}", file=sys.stderr)
    return 0
