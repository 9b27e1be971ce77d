"""Resume after a hub restart: N clients catching up together over one backlog, against one client.

    python -m bench.resume                           # 1,000 clients, a backlog of 10,000 events
    python -m bench.resume --clients 200 --events 2000

Starts a private redis-server, publishes a marker event and then the backlog through
`RealtimeBackend` while the sockets are away, and runs two rounds, each on a freshly started
`rthub serve` (cold render cache and shared history, as after a restart): one client resuming from
the marker, then `--clients` clients resuming from it at once. Clients are the benchmark's OAuth
clients (client i granted course i % 10), so each is entitled to a tenth of the backlog. For each
round it reports the wall time until every frame arrived, the hub's CPU, and from the hub's
/metrics how many translations and Redis history reads the round cost: shared catch-ups keep both
near the one-client figures instead of multiplying them by the number of clients. Every client's
cursors are checked: its entitled backlog, in order, nothing lost or repeated.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import harness
from bench.subscribers import SubscriberPool, raise_file_limit
from hub.dev.embedded import EmbeddedRedis, free_port
from rthub_lms.backend import RealtimeBackend

HEAD = 80  # bytes of each frame kept: `{"type":"event","cursor":"…"` comes first
CURSOR = re.compile(rb'"cursor":"([0-9]+-[0-9]+)"')
METRICS = {
    "translated": "rthub_events_translated_total",
    "history_reads": "rthub_resume_history_reads_total",
    "history_cached": "rthub_resume_history_cached_total",
    "render_cache_hits": "rthub_render_cache_hits_total",
}


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = dict.fromkeys(METRICS, 0.0)
    for line in text.splitlines():
        for key, name in METRICS.items():
            if line.startswith(name):
                found[key] += float(line.rsplit(" ", 1)[1])
    return found


def publish_backlog(redis_url: str, prefix: str, count: int) -> tuple[str, dict[int, list[str]]]:
    """The marker's cursor and, per course index, the backlog's cursors in stream order."""
    backend = RealtimeBackend(redis_url=redis_url, redis_prefix=prefix, timeout=5.0)
    course_index = {course: index for index, course in enumerate(harness.COURSES)}
    events = harness.make_events(count + 1, seed=11)
    marker = backend.send(events[0])
    per_course: dict[int, list[str]] = defaultdict(list)
    for event in events[1:]:
        cursor = backend.send(event)
        if cursor is None:
            raise RuntimeError(f"publishing the backlog failed: {backend.counts}")
        per_course[course_index[event["context"]["course_id"]]].append(cursor)
    backend.close()
    if marker is None:
        raise RuntimeError("publishing the marker failed")
    return marker, per_course


def round_(target: harness.Target, marker: str, per_course: dict[int, list[str]], clients: int,
           processes: int, timeout: float) -> dict[str, Any]:
    """Start the hub, let `clients` resume from `marker` at once, wait for every frame; stop the hub."""
    with target:
        time.sleep(0.5)
        before = scrape(target.port)
        cpu_before = target.cpu_seconds()
        expected = sum(len(per_course[index % harness.COURSE_COUNT]) for index in range(clients))
        subscribers = [(target.tokens[index % len(target.tokens)], None) for index in range(clients)]
        started = time.perf_counter()
        url = f"{target.url}?resume_from={marker}"
        with SubscriberPool(url, subscribers, min(processes, clients), head=HEAD) as pool:
            complete = pool.wait_for(expected, timeout)
            seconds = time.perf_counter() - started
            cpu = target.cpu_seconds() - cpu_before
            time.sleep(0.3)
            collected = pool.collect()
        after = scrape(target.port)
        rss_mb = target.rss() / 2**20
    received: dict[int, list[str]] = defaultdict(list)
    for index, head, _ in collected.frames:
        match = CURSOR.search(head)
        if match is not None:
            received[index].append(match[1].decode())
    wrong = sum(received[index] != per_course[index % harness.COURSE_COUNT] for index in range(clients))
    delivered = sum(len(cursors) for cursors in received.values())
    counts = {key: after[key] - before[key] for key in METRICS}
    entitled = sum(len(per_course[index]) for index in {index % harness.COURSE_COUNT for index in range(clients)})
    return {
        "clients": clients,
        "complete": complete,
        "seconds": seconds,
        "expected_frames": expected,
        "delivered_frames": delivered,
        "clients_wrong": wrong,
        "closed": len(collected.closes),
        "hub_cpu_seconds": cpu,
        "cpu_us_per_frame": 1e6 * cpu / delivered if delivered else float("nan"),
        "frames_per_s": delivered / seconds if seconds else 0.0,
        "rss_mb": rss_mb,
        **counts,
        "entitled_events": entitled,
        "translations_per_event": counts["translated"] / entitled if entitled else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10_000, help="backlog size (default 10,000)")
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for a round's frames")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    raise_file_limit()
    args.results.mkdir(parents=True, exist_ok=True)
    rows = []
    with EmbeddedRedis() as redis:
        port = free_port()
        target = harness.hub_target(redis.url, port, 1)
        with target:  # registers the clients, so the backlog passes the LMS-side filter
            pass
        marker, per_course = publish_backlog(redis.url, target.prefix, args.events)
        print(f"backlog: {args.events} events after {marker}", flush=True)
        for clients in (1, args.clients):
            row = round_(target, marker, per_course, clients, args.processes, args.timeout)
            rows.append(row)
            print(f"  {clients:>5} client(s): {row['seconds']:.2f} s, {row['delivered_frames']} of "
                  f"{row['expected_frames']} frames, wrong {row['clients_wrong']}, closed {row['closed']}, "
                  f"hub CPU {row['hub_cpu_seconds']:.2f} s ({row['cpu_us_per_frame']:.1f} µs/frame), "
                  f"translations {row['translated']:.0f}, history reads {row['history_reads']:.0f} "
                  f"(cached pages {row['history_cached']:.0f})", flush=True)
    one, many = rows
    print()
    print("| clients | seconds | frames | frames/s | hub CPU s | CPU µs/frame | translations | per entitled event "
          "| history reads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clients']} | {row['seconds']:.2f} | {row['delivered_frames']} | {row['frames_per_s']:.0f} | "
              f"{row['hub_cpu_seconds']:.2f} | {row['cpu_us_per_frame']:.1f} | {row['translated']:.0f} | "
              f"{row['translations_per_event']:.2f} | {row['history_reads']:.0f} |")
    ratio = {key: (many[key] / one[key] if one[key] else float("nan"))
             for key in ("translated", "translations_per_event", "history_reads", "hub_cpu_seconds",
                         "delivered_frames", "cpu_us_per_frame")}
    print(f"| ratio {args.clients}:1 | | {ratio['delivered_frames']:.0f}x | | {ratio['hub_cpu_seconds']:.1f}x | "
          f"{ratio['cpu_us_per_frame']:.2f}x | {ratio['translated']:.2f}x | {ratio['translations_per_event']:.2f}x "
          f"| {ratio['history_reads']:.2f}x |")
    ok = all(row["complete"] and not row["clients_wrong"] and not row["closed"] for row in rows)
    print("all clients got exactly their backlog, in order" if ok else "SOME CLIENTS DID NOT GET THEIR BACKLOG")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.results / f"resume-{stamp}.json"
    path.write_bytes(orjson.dumps({"events": args.events, "rows": rows, "ratios": ratio},
                                  option=orjson.OPT_INDENT_2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
