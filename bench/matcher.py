"""Matcher cost per event with 1,000 clients: GrantIndex against the naive loop, same run.

    python -m bench.matcher [--clients 1000] [--events 20000] [--seed 1]

Clients are mostly course-keyed, with some org, event-type, user, glob and all-events grants, and
some narrowed by a subscription filter. Both strategies must return the same keys for every event
(checked). The second part times `PreemptiveFilter.wanted` after loading the same clients from a
private redis-server, against the naive "any matcher matches" loop; once with the same clients
and once with only the course/org/user-scoped ones (so that some events are not wanted).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from hub.config import Settings
from rthub_lms import keys as rkeys
from rthub_lms.events import Event
from rthub_lms.filter import PreemptiveFilter
from rthub_lms.grants import (
    EventFacts,
    GrantIndex,
    Matcher,
    compile_grant,
    event_facts,
    narrow,
    validate_filter,
    validate_grant,
)
from tests.servers import RedisServer

EVENT_TYPES = [
    "problem_check",
    "play_video",
    "edx.video.played",
    "edx.video.paused",
    "edx.video.stopped",
    "edx.course.enrollment.activated",
    "edx.course.enrollment.deactivated",
    "edx.grades.subsection.grade_calculated",
    "edx.ui.lms.sequence.next_selected",
    "edx.forum.thread.created",
    "showanswer",
    "seq_goto",
]


def population(rng: random.Random, clients: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Orgs, courses, and one (grant, filter) spec per client."""
    orgs = [f"Org{n}X" for n in range(50)]
    courses = [f"course-v1:{rng.choice(orgs)}+C{n}+2024_T{rng.randint(1, 3)}" for n in range(2_000)]
    specs: list[dict[str, Any]] = []
    for _ in range(clients):
        roll = rng.random()
        if roll < 0.80:
            rule: dict[str, Any] = {"courses": rng.sample(courses, rng.randint(1, 5))}
            if rng.random() < 0.3:
                rule["event_types"] = rng.sample(EVENT_TYPES, 3)
            grant = [rule]
        elif roll < 0.88:
            grant = [{"orgs": rng.sample(orgs, rng.randint(1, 2))}]
        elif roll < 0.93:
            grant = [{"event_types": rng.sample(EVENT_TYPES, 2)}]
        elif roll < 0.95:
            grant = [{"users": [rng.randint(1, 100_000) for _ in range(10)]}]
        elif roll < 0.98:
            grant = [{"courses": [f"course-v1:{rng.choice(orgs)}+*"], "event_types": ["edx.video."]}]
        elif roll < 0.99:
            grant = [{"event_types": ["edx.grades."]}]
        else:
            grant = [{}]
        filt = [{"event_types": ["edx.video.", "problem_check"]}] if rng.random() < 0.2 else None
        specs.append({"grant": grant, "filter": filt})
    return orgs, courses, specs


def make_events(rng: random.Random, courses: list[str], count: int) -> list[Event]:
    return [
        Event(
            name=rng.choice(EVENT_TYPES),
            timestamp="2024-05-01T10:00:00+00:00",
            data={},
            context={
                "course_id": rng.choice(courses),
                "user_id": rng.randint(1, 100_000),
                "host": "lms.example.com",
            },
        )
        for _ in range(count)
    ]


def per_event_us(function: Callable[[Any], Any], items: list[Any], rounds: int = 3) -> float:
    """Best of `rounds` passes, in microseconds per item."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def bench_fanout(specs: list[dict[str, Any]], facts: list[EventFacts]) -> None:
    matchers: dict[Hashable, Matcher] = {}
    index = GrantIndex()
    start = time.perf_counter()
    for key, spec in enumerate(specs):
        matchers[key] = narrow(compile_grant(validate_grant(spec["grant"])), validate_filter(spec["filter"]))
        index.set(key, matchers[key])
    build_ms = (time.perf_counter() - start) * 1e3

    def naive(f: EventFacts) -> set[Hashable]:
        return {key for key, matcher in matchers.items() if matcher.matches(f)}

    deliveries = 0
    for f in facts:
        found = index.matching(f)
        if found != naive(f):
            raise SystemExit("GrantIndex and the naive loop disagree")
        deliveries += len(found)
    naive_us = per_event_us(naive, facts)
    index_us = per_event_us(index.matching, facts)
    print(f"fan-out, {len(specs)} clients ({build_ms:.1f} ms to compile and index)")
    print(f"  matching clients per event:   {deliveries / len(facts):.2f}")
    print(f"  naive loop over all matchers: {naive_us:8.2f} us/event (baseline)")
    print(
        f"  GrantIndex.matching:          {index_us:8.2f} us/event   ratio {naive_us / index_us:.1f}x faster"
    )


def bench_preemptive(label: str, specs: list[dict[str, Any]], events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        client = server.client()
        try:
            settings = Settings(redis_url=server.url, redis_prefix="bench:")
            client.hset(
                rkeys.active_grants_key(settings),
                mapping={str(key): json.dumps(spec["grant"]) for key, spec in enumerate(specs)},
            )
            preemptive = PreemptiveFilter(client, settings)
            start = time.perf_counter()
            preemptive.reload()
            reload_ms = (time.perf_counter() - start) * 1e3
        finally:
            client.close()
            server.stop()
    grants = [compile_grant(validate_grant(spec["grant"])) for spec in specs]

    def naive(event: Event) -> bool:
        f = event_facts(event)
        return any(grant.matches(f) for grant in grants)

    wanted = sum(preemptive.wanted(event) for event in events)
    if wanted != sum(naive(event) for event in events):
        raise SystemExit("PreemptiveFilter.wanted and the naive loop disagree")
    facts_us = per_event_us(event_facts, events)
    naive_us = per_event_us(naive, events)
    wanted_us = per_event_us(preemptive.wanted, events)
    print(f"preemptive filter, {len(specs)} clients, {label} (reload from Redis: {reload_ms:.1f} ms)")
    print(f"  events wanted:                {wanted / len(events):.1%}")
    print(f"  event_facts alone:            {facts_us:8.2f} us/event")
    print(f"  naive any() over all grants:  {naive_us:8.2f} us/event (baseline, includes event_facts)")
    ratio = naive_us / wanted_us
    print(f"  PreemptiveFilter.wanted:      {wanted_us:8.2f} us/event   ratio {ratio:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    _, courses, specs = population(rng, args.clients)
    events = make_events(rng, courses, args.events)
    bench_fanout(specs, [event_facts(event) for event in events])
    bench_preemptive("same population", specs, events)
    # Clients seeing every course (all events, or every event of some types) make nearly every event
    # wanted; with course/org/user-scoped clients only, the filter really drops events.
    scoped = [
        spec for spec in specs if all({"courses", "orgs", "users"} & set(rule) for rule in spec["grant"])
    ]
    bench_preemptive("course/org/user-scoped clients only", scoped, events)


if __name__ == "__main__":
    main()
