"""The per-unit capacities of docs/scale.md, measured on the machine that runs this, and the model on top.

    python -m bench.scale [--events 5000] [--repeat 3] [--no-cluster] [--delivery-rate N]

Each figure is the median of `--repeat` runs, and each run checks that nothing was lost or repeated:

- **Redis per event** (a private redis-server, then a private three-master Redis Cluster): CPU of the
  redis-server holding the `{events}` slot per event appended through the hub's publish script
  (`RedisBroker.publish`: XADD + PUBLISH), with 1 and with `--subscribers` processes following the
  live feed through the hub's own code (`RedisBroker.live`, as a hub worker or render stage does).
  The difference gives the cost of each extra subscribing process. Every follower must see every
  event once, in cursor order.
- **The split on the cluster**: three feeds, each under its own prefix whose hash tag puts its
  `{events}` slot on a different master (how two deployments already share a cluster), published
  at once: per-master CPU per event, i.e. whether a split stream costs each shard what one costs.
- **Render stage per event**: `RenderStage.publish` (facts, grant index, anonymise from a warm cache,
  translate, encode, bundle) on simulator events from a live message, for 10 clients in three
  (translator, consumer type) groups; the bundles are counted.
- **Frames per hub CPU-second**: `bench.dispatch --backlog`'s hub side (decode, match, render,
  one write per socket per slice into real Unix sockets), 100 sockets, 10 per event.
- **Bytes per frame**: the mean encoded `event` frame, per translator, plus the WebSocket header.
- **Delivery events/s per instance** is not measured here (`bench.webhooks` measures it, and the
  durable path is being redesigned, issue 42 goal 1): `--delivery-rate` feeds the model (default:
  7,016 events/s, `bench.webhooks --clients 10 --batch 100`'s median for one hub).

The model (`model`) is pure arithmetic on those numbers; docs/scale.md explains each line.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis

from auth.registry import ClientRegistry
from bench import dispatch
from bench.harness import COURSES, make_events
from hub.config import Settings
from hub.fanout.stage.server import RenderStage
from hub.ingest import BadEntry, cursor_key
from hub.ingest.redis import RedisBroker, decode_live
from hub.redis import connect
from rthub_lms.connect import discover
from rthub_lms.keys import stream_key
from tests.servers import RedisCluster, RedisServer

GROUPS = (("xapi", "adaptive"), ("caliper", "other"), ("xapi", "university"))
PUBLISHERS = 8  # concurrent publishes, as several LMS workers send at once
WS_HEADER = 4  # a server frame of 126..65535 bytes: 2 + 2 bytes of length, no mask
FOLLOW_TIMEOUT = 60.0

# The edX.org-sized peak of issue 42.
PEAK_EVENTS = 10_000
WS_CONSUMERS, WS_SHARE = 1_000, 0.10
DELIVERY_CONSUMERS, DELIVERY_SHARE = 100, 0.10
HEADROOM = 0.6  # plan each core, and each Redis shard, to at most 60 % busy


# --- Redis -------------------------------------------------------------------------------------


def _follow(url: str, prefix: str, expect: int, ready: Any, done: Any) -> None:
    """A live-feed follower in its own process: the hub's `RedisBroker.live`, checking order and count."""

    async def run() -> None:
        topology = discover(url)
        client = connect(topology, max_connections=4, timeout=5.0)
        broker = RedisBroker(client, Settings(redis_url=url, redis_prefix=prefix), sharded=topology.sharded)
        seen, last, bad, announced = 0, (0, 0), 0, False
        feed = broker.live()
        deadline = time.monotonic() + FOLLOW_TIMEOUT
        async for entry in feed:
            if isinstance(entry, BadEntry):
                bad += 1
                continue
            if entry.event["name"] == "bench.scale.ready":
                if not announced:
                    ready.put(1)
                    announced = True
                continue
            key = cursor_key(entry.cursor)
            if key <= last:
                bad += 1
            last = key
            seen += 1
            if seen == expect or time.monotonic() > deadline:
                break
        await feed.aclose()
        await client.aclose()
        done.put((seen, bad))

    asyncio.run(run())


def _event(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "timestamp": "2026-12-07T10:00:00+00:00", "data": {"n": number},
            "context": {"course_id": COURSES[number % len(COURSES)], "user_id": 1000 + number % 50}}


async def _publish(url: str, prefixes: list[str], count: int) -> None:
    """`count` events on each prefix's feed through the hub's publish script, `PUBLISHERS` at a time."""
    topology = discover(url)
    client = connect(topology, max_connections=PUBLISHERS * 2, timeout=10.0)
    brokers = [RedisBroker(client, Settings(redis_url=url, redis_prefix=p), sharded=topology.sharded) for p in prefixes]
    queue = [(broker, number) for number in range(count) for broker in brokers]

    async def worker(offset: int) -> None:
        for broker, number in queue[offset::PUBLISHERS]:
            await broker.publish(_event("bench.scale", number))

    await asyncio.gather(*(worker(offset) for offset in range(PUBLISHERS)))
    await client.aclose()


async def _announce(url: str, prefixes: list[str]) -> None:
    topology = discover(url)
    client = connect(topology, max_connections=2, timeout=5.0)
    for prefix in prefixes:
        broker = RedisBroker(client, Settings(redis_url=url, redis_prefix=prefix), sharded=topology.sharded)
        await broker.publish(_event("bench.scale.ready", 0))
    await client.aclose()


def _slot_owner(url: str, prefix: str, processes: dict[int, psutil.Process]) -> int:
    """The port of the redis-server holding the `{events}` slot of `prefix`."""
    if len(processes) == 1:
        return next(iter(processes))
    node = redis.RedisCluster.from_url(url).get_node_from_key(stream_key(Settings(redis_prefix=prefix)))
    return int(node.port)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def feed_run(url: str, processes: dict[int, psutil.Process], prefixes: list[str], followers: int,
             events: int) -> dict[str, float]:
    """Publish `events` per prefix with `followers` live-feed processes per prefix; redis CPU µs per
    event on each prefix's slot owner. Raises when a follower lost or repeated anything."""
    context = multiprocessing.get_context("spawn")
    ready, done = context.Queue(), context.Queue()
    workers = [context.Process(target=_follow, args=(url, prefix, events, ready, done), daemon=True)
               for prefix in prefixes for _ in range(followers)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 60
        arrived = 0
        while arrived < len(workers):
            if time.monotonic() > deadline:
                raise RuntimeError("live-feed followers did not start")
            asyncio.run(_announce(url, prefixes))
            while arrived < len(workers):
                try:
                    arrived += ready.get(timeout=0.2)
                except Exception:
                    break
        owners = {prefix: _slot_owner(url, prefix, processes) for prefix in prefixes}
        before = {port: _cpu(process) for port, process in processes.items()}
        started = time.perf_counter()
        asyncio.run(_publish(url, prefixes, events))
        results = [done.get(timeout=FOLLOW_TIMEOUT + 30) for _ in workers]
        elapsed = time.perf_counter() - started
        spent = {port: _cpu(process) - before[port] for port, process in processes.items()}
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    broken = [result for result in results if result != (events, 0)]
    if broken:
        raise RuntimeError(f"followers saw (events, out of order or bad) {broken}; expected ({events}, 0)")
    figures = {f"{prefix} µs/event": spent[owners[prefix]] / events * 1e6 for prefix in prefixes}
    figures["events/s"] = events * len(prefixes) / elapsed
    return figures


def _split_prefixes(url: str, masters: int) -> list[str]:
    """One prefix per master: a hash tag in the prefix moves the `{events}` slot (`stream_key`)."""
    cluster = redis.RedisCluster.from_url(url)
    found: dict[str, str] = {}
    for number in range(1000):
        prefix = f"scale:{{s{number}}}:"
        node = cluster.get_node_from_key(stream_key(Settings(redis_prefix=prefix)))
        found.setdefault(node.name, prefix)
        if len(found) == masters:
            break
    return list(found.values())


# --- The hub's stages ---------------------------------------------------------------------------


async def render_stage(url: str, events: int, repeat: int) -> tuple[float, dict[str, float]]:
    """Median µs per event of the render stage, and mean encoded frame bytes per translator."""
    settings = Settings(redis_url=url, redis_prefix="scale:stage:")
    client = connect(discover(url), max_connections=16, timeout=5.0)
    registry = ClientRegistry(client, settings)
    for index, course in enumerate(COURSES):
        translator, consumer_type = GROUPS[index % len(GROUPS)]
        await registry.create(name=f"scale-{index}", type=consumer_type, translator=translator,
                              grant=[{"courses": [course]}])
    stage = RenderStage(client, settings, sharded=False)
    await stage.reload_interest()
    sample = make_events(events)
    sizes: dict[str, list[int]] = {"xapi": [], "caliper": []}

    async def run(first_millis: int) -> float:
        messages = [f"{first_millis + number}-0\n".encode() + orjson.dumps(event)
                    for number, event in enumerate(sample)]
        bundles = stage.counts["bundles"]
        started = time.process_time()
        for message in messages:
            entry = decode_live(message)
            if isinstance(entry, BadEntry):
                raise RuntimeError(f"bad entry {entry.reason}")
            cursor_key(entry.cursor)
            await stage.publish(entry)
        await asyncio.sleep(0)
        spent = time.process_time() - started
        if stage.counts["bundles"] - bundles != events:
            raise RuntimeError(f"{stage.counts['bundles'] - bundles} bundles for {events} events")
        return spent / events * 1e6

    await run(1_600_000_000_000)  # warm: the anonymiser's ids, the translators' fragments
    figures = [await run(1_700_000_000_000 + number * events) for number in range(repeat)]
    for event in sample[:1000]:
        entry = decode_live(b"1-0\n" + orjson.dumps(event))
        if isinstance(entry, BadEntry):
            continue
        for translator, consumer_type in GROUPS[:2]:
            frame = await stage.renderer.render(entry, translator, consumer_type)
            if frame is not None:
                sizes[translator].append(len(frame.text.encode()) + WS_HEADER)
    await client.aclose()
    return statistics.median(figures), {name: statistics.mean(found) for name, found in sizes.items() if found}


def frames_per_cpu_second(events: int, repeat: int) -> tuple[float, float]:
    """Hub and bare loop frames per CPU-second (`bench.dispatch --backlog`: real socket writes)."""
    seconds, _ = asyncio.run(dispatch.measure(events, repeat, backlog=True))
    frames = events * dispatch.SUBSCRIBERS // len(COURSES)
    return frames / statistics.median(seconds["hub"]), frames / statistics.median(seconds["bare loop"])


# --- The model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capacities:
    frames_per_cpu_s: float
    render_us: float
    redis_append_us: float  # the append and its first subscriber
    redis_subscriber_us: float  # each further subscribing process
    delivery_per_instance: float
    bytes_per_frame: float


def subscribing_processes(c: Capacities, machine_cores: int) -> int:
    """One render stage per machine of hub workers, and each delivery instance, follow the feed."""
    frames = PEAK_EVENTS * WS_CONSUMERS * WS_SHARE
    worker_cores = frames / (c.frames_per_cpu_s * HEADROOM)
    render_cores = math.ceil(PEAK_EVENTS * c.render_us / 1e6 / HEADROOM)
    machines = math.ceil(worker_cores / max(1, machine_cores - render_cores))
    deliveries = PEAK_EVENTS * DELIVERY_CONSUMERS * DELIVERY_SHARE
    return machines + math.ceil(deliveries / (c.delivery_per_instance * HEADROOM))


def model(c: Capacities, machine_cores: int = 16) -> list[tuple[str, str]]:
    """What the edX.org-sized peak needs, line by line, from the per-unit capacities."""
    frames = PEAK_EVENTS * WS_CONSUMERS * WS_SHARE
    deliveries = PEAK_EVENTS * DELIVERY_CONSUMERS * DELIVERY_SHARE
    worker_cores = frames / (c.frames_per_cpu_s * HEADROOM)
    render_core = PEAK_EVENTS * c.render_us / 1e6
    machine_worker_cores = machine_cores - math.ceil(render_core / HEADROOM)
    machines = math.ceil(worker_cores / machine_worker_cores) if machine_worker_cores > 0 else math.inf
    delivery_instances = math.ceil(deliveries / (c.delivery_per_instance * HEADROOM))
    subscribers = machines + delivery_instances  # one render stage per machine; each delivery instance reads the feed
    shard_busy = PEAK_EVENTS * (c.redis_append_us + max(0, subscribers - 1) * c.redis_subscriber_us) / 1e6
    max_subscribers = 1 + (HEADROOM * 1e6 / PEAK_EVENTS - c.redis_append_us) / c.redis_subscriber_us
    stage_limit = HEADROOM * 1e6 / c.render_us
    egress = frames * c.bytes_per_frame * 8 / 1e9
    return [
        ("WebSocket frames/s", f"{frames:,.0f}"),
        ("hub worker cores (frames ÷ frames per CPU-s, 60 % busy)", f"{worker_cores:,.0f}"),
        ("render stage per machine (one core)", f"{render_core:.2f} of a core busy at 10k events/s; "
                                                f"caps a machine at {stage_limit:,.0f} events/s"),
        (f"machines of {machine_cores} cores (workers + render stage)", f"{machines}"),
        ("deliveries/s (LRS/webhook)", f"{deliveries:,.0f}"),
        ("delivery instances at the measured rate", f"{delivery_instances}"),
        ("processes subscribing to the `{events}` feed", f"{subscribers}"),
        ("`{events}` shard busy", f"{shard_busy:.2f} of its core (limit {HEADROOM}); "
                                  f"at most {max_subscribers:.0f} subscribing processes per shard"),
        ("egress (frames x bytes)", f"{egress:.1f} Gbit/s"),
    ]


def first_bottleneck(c: Capacities, subscribers: int) -> str:
    """The component that needs splitting first as the event rate grows, and at what rate."""
    limits = {
        f"the `{{events}}` shard with {subscribers} subscribing processes":
            HEADROOM * 1e6 / (c.redis_append_us + max(0, subscribers - 1) * c.redis_subscriber_us),
        "one render stage per machine": HEADROOM * 1e6 / c.render_us,
    }
    name = min(limits, key=limits.__getitem__)
    return f"{name}, near {limits[name]:,.0f} events/s"


# --- Running it ----------------------------------------------------------------------------------


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _redis_figures(url: str, processes: dict[int, psutil.Process], subscribers: int, events: int,
                   repeat: int, label: str, report: Callable[[str], None]) -> tuple[float, float]:
    prefix = "scale:feed:"
    one = [feed_run(url, processes, [prefix], 1, events) for _ in range(repeat)]
    many = [feed_run(url, processes, [prefix], subscribers, events) for _ in range(repeat)]
    first = _median(one, f"{prefix} µs/event")
    each = (_median(many, f"{prefix} µs/event") - first) / (subscribers - 1)
    report(f"{label}: {first:.1f} µs per append with one subscriber, {each:.1f} µs per extra subscribing "
           f"process ({subscribers} followers: {_median(many, f'{prefix} µs/event'):.1f} µs); "
           f"{_median(one, 'events/s'):,.0f} events/s published with one")
    return first, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=4, help="live-feed followers for the per-subscriber cost")
    parser.add_argument("--no-cluster", action="store_true", help="skip the three-master cluster")
    parser.add_argument("--delivery-rate", type=float, default=7016.0, help="delivered events/s per instance")
    parser.add_argument("--machine-cores", type=int, default=16)
    parser.add_argument("--frame-us", type=float, default=36.0,
                        help="hub CPU µs per frame for the model: a whole hub process at 1,500 events/s "
                             "(bench.e2e; default the docs/performance.md figure, 33.7-38.3 µs)")
    args = parser.parse_args()
    print(f"bench.scale on {psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.2f}; "
          f"median of {args.repeat}, {args.events} events per run")
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis")
        server.start()
        try:
            assert server.process is not None
            processes = {server.port: psutil.Process(server.process.pid)}
            append_us, subscriber_us = _redis_figures(server.url, processes, args.subscribers, args.events,
                                                      args.repeat, "redis-server", print)
            render_us, sizes = asyncio.run(render_stage(server.url, args.events, args.repeat))
        finally:
            server.stop()
        print(f"render stage: {render_us:.1f} µs per event (10 clients, 3 groups)")
        print("bytes per frame: " + ", ".join(f"{name} {size:,.0f}" for name, size in sizes.items()))
        hub_fps, bare_fps = frames_per_cpu_second(args.events, args.repeat)
        print(f"frames per CPU-second: hub {hub_fps:,.0f}, bare loop {bare_fps:,.0f} ({hub_fps / bare_fps:.2f}x)")
        if not args.no_cluster:
            cluster = RedisCluster(Path(workdir) / "cluster")
            cluster.start()
            try:
                nodes = {node.port: psutil.Process(node.process.pid) for node in cluster.nodes if node.process}
                _redis_figures(cluster.url, nodes, args.subscribers, args.events, args.repeat,
                               "3-master cluster, the {events} slot's master", print)
                prefixes = _split_prefixes(cluster.url, len(cluster.nodes))
                split = [feed_run(cluster.url, nodes, prefixes, 1, args.events) for _ in range(args.repeat)]
                per_master = ", ".join(f"{_median(split, f'{p} µs/event'):.1f}" for p in prefixes)
                print(f"split over {len(prefixes)} shards (one per master, published at once): µs per event on each "
                      f"master {per_master}; {_median(split, 'events/s'):,.0f} events/s in all from one publisher")
            finally:
                cluster.stop()
    sizes_mean = statistics.mean(sizes.values())
    print(f"(the model takes a whole hub process's {args.frame_us:g} µs per frame from --frame-us: the in-process "
          f"figure above leaves out uvicorn, the live feed's reads and the kernel's side of each write)")
    capacities = Capacities(1e6 / args.frame_us, render_us, append_us, subscriber_us, args.delivery_rate, sizes_mean)
    print(f"\nmodel (10,000 events/s; {WS_CONSUMERS:,} WebSocket consumers and {DELIVERY_CONSUMERS} "
          f"LRS/webhook consumers, each seeing {WS_SHARE:.0%}; delivery {args.delivery_rate:,.0f}/s per instance):")
    for name, value in model(capacities, args.machine_cores):
        print(f"  {name:<62} {value}")
    print(f"  first bottleneck: {first_bottleneck(capacities, subscribing_processes(capacities, args.machine_cores))}")


if __name__ == "__main__":
    main()
