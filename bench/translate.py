"""Translation cost per event on the conformance corpus, with the per-event split and same-run baselines.

    python -m bench.translate [--rounds N]

For each translator: µs/event for `hub.translate.translate`, the cost of its parts, and the ratio
against the naive design measured in the same run (every statement built through tincan objects,
every fragment rebuilt, per event; for Caliper every entity rebuilt and validated per event). The
reference translator's figures (≈440 µs xAPI, ≈100 µs Caliper per event) are from the issue, not
measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tincan import Statement

from hub.translate import TranslationSettings, caliper, ids, supports, translate, xapi_fragments
from hub.translate.base import Source
from rthub_lms.events import Event, normalise

SETTINGS = TranslationSettings(lms_root_url="http://localhost:18000", transformer_version="rthub@0.1.0")
ACTOR = "6b0f54b4-1e4c-4f43-a0cf-1b8c0ad6a0d2"
TARGETS_US = {"xapi": 44.0, "caliper": 10.0}
XAPI_CACHES = (
    xapi_fragments.verb,
    xapi_fragments.actor,
    xapi_fragments.activity,
    xapi_fragments.duration,
)
CALIPER_CACHES = (caliper.person, caliper.course_offering, caliper.resource, caliper.video)


def corpus() -> list[Event]:
    configured = os.environ.get("RTHUB_CONFORMANCE_DIR")
    root = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance"
    )
    folder = root / "edx-events"
    if not folder.is_dir():
        sys.exit(f"conformance corpus not found at {root} (set RTHUB_CONFORMANCE_DIR)")
    return [
        normalise(json.loads(path.read_text()))
        for path in sorted(folder.iterdir())
        if "anonymous" not in path.name
    ]


def per_event_us(events: list[Any], work: Callable[[Any], object], rounds: int) -> float:
    """Best-of-`rounds` mean cost per event of `work`, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in events:
            work(item)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6


def xapi_full_tincan(event: Event) -> list[dict[str, Any]]:
    """The naive design: fragments rebuilt through tincan, and the whole statement as tincan objects."""
    for cache in XAPI_CACHES:
        cache.cache_clear()
    statements = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    return [json.loads(Statement(statement).to_json("1.0.3")) for statement in statements]


def caliper_uncached(event: Event) -> list[dict[str, Any]]:
    for cache in CALIPER_CACHES:
        cache.cache_clear()
    return translate(event, "caliper", actor_id=ACTOR, settings=SETTINGS)


def xapi_split(events: list[Event], rounds: int) -> dict[str, float]:
    """What one xAPI event costs, part by part (each part timed alone over the same events)."""
    sources = [Source(event, ACTOR, SETTINGS) for event in events]
    bodies = [_without_id(translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)[0]) for event in events]
    return {
        "event view (Source)": per_event_us(events, lambda event: Source(event, ACTOR, SETTINGS), rounds),
        "cached fragments (verb, actor, course)": per_event_us(
            sources,
            lambda src: (
                xapi_fragments.verb("played"),
                xapi_fragments.actor(src.root, src.actor_id),
                xapi_fragments.activity(ids.course_url(src.root, src.course_id()), "course"),
            ),
            rounds,
        ),
        "statement id (content uuid5)": per_event_us(bodies, ids.content_id, rounds),
        "timestamp (UTC)": per_event_us(sources, lambda src: ids.utc_timestamp(src.timestamp), rounds),
    }


def caliper_split(events: list[Event], rounds: int) -> dict[str, float]:
    sources = [Source(event, ACTOR, SETTINGS) for event in events]
    bodies = [_without_id(translate(event, "caliper", actor_id=ACTOR, settings=SETTINGS)[0]) for event in events]
    return {
        "event view (Source)": per_event_us(events, lambda event: Source(event, ACTOR, SETTINGS), rounds),
        "cached entities (actor, course)": per_event_us(
            sources,
            lambda src: (
                caliper.person(src.root, src.actor_id),
                caliper.course_offering(ids.course_url(src.root, src.course_id())),
            ),
            rounds,
        ),
        "event id (content uuid5)": per_event_us(bodies, ids.content_id, rounds),
        "eventTime (ms, Z)": per_event_us(sources, lambda src: ids.caliper_time(src.timestamp), rounds),
    }


def _without_id(output: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in output.items() if key != "id"}


def report(translator: str, events: list[Event], rounds: int) -> None:
    supported = [event for event in events if supports(translator, event["name"])]
    baseline_work = xapi_full_tincan if translator == "xapi" else caliper_uncached
    baseline_name = "full tincan, no caches" if translator == "xapi" else "no entity caches"
    ours = per_event_us(
        supported, lambda event: translate(event, translator, actor_id=ACTOR, settings=SETTINGS), rounds
    )
    baseline = per_event_us(supported, baseline_work, max(1, rounds // 4))
    split = (xapi_split if translator == "xapi" else caliper_split)(supported, rounds)
    outputs = sum(len(translate(event, translator, actor_id=ACTOR, settings=SETTINGS)) for event in supported)
    target = TARGETS_US[translator]
    print(f"{translator}: {len(supported)} corpus events -> {outputs} outputs")
    verdict = "met" if ours <= target else "MISSED"
    print(f"  rthub translate          {ours:8.2f} µs/event   (target <= {target:.0f} µs: {verdict})")
    print(f"  baseline ({baseline_name}) {baseline:8.2f} µs/event   ratio {baseline / ours:5.1f}x")
    print("  per-event split:")
    for part, cost in split.items():
        print(f"    {part:40s} {cost:7.2f} µs")
    rest = ours - sum(split.values())
    print(f"    {'assembly, results, validation (rest)':40s} {rest:7.2f} µs")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="timing rounds; the best is kept")
    args = parser.parse_args(argv)
    events = corpus()
    for translator in ("xapi", "caliper"):
        report(translator, events, args.rounds)


if __name__ == "__main__":
    main()
