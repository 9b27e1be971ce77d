"""Translation cost per event on the conformance corpus, with the per-event split and same-run baselines.

    python -m bench.translate [--rounds N]

For each translator: µs/event for `hub.translate.translate`, the cost of its parts, and the ratio
against the naive design measured in the same run (every statement built through tincan objects,
every fragment rebuilt, per event; for Caliper every entity rebuilt and validated per event).

Then xAPI through `rthub translate` against the reference translator (event-routing-backends, in its
own virtualenv as the differential tests build it: `tests/hub/translate/oracle.py`) on the same
events, both from a raw JSON line to the JSON of each statement: the reference's transformer
(`get_transformer(event).transform()`, then `to_json()`) timed inside its own process, ours the
whole `rthub translate` command (read, parse, normalise, translate, write) over a file of the same
events; median of 3 each. `--no-reference` skips it (no virtualenv is built then).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


# Runs in the reference's interpreter: its transformer over raw JSON lines, per event, median of 3.
REFERENCE_TIMER = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import oracle_runner
oracle_runner.stub_platform(sys.argv[2], "Demonstration Course")
oracle_runner.configure_django("http://localhost:18000")
from event_routing_backends.processors.xapi.registry import XApiTransformersRegistry as registry
lines = open(sys.argv[3], "rb").read().splitlines()

def run(line):
    event = json.loads(line)
    event["event"] = event["data"]  # the tracking log's key, which its exam transformers read
    result = registry.get_transformer(event).transform()
    return [item.to_json() for item in (result if isinstance(result, list) else [result])]

ok = []
for number, line in enumerate(lines):
    try:
        run(line)
        ok.append(number)
    except Exception:
        pass
kept = [lines[number] for number in ok]
rounds = []
for _ in range(3):
    started = time.process_time()
    for _ in range(int(sys.argv[4])):
        for line in kept:
            run(line)
    rounds.append((time.process_time() - started) / (len(kept) * int(sys.argv[4])) * 1e6)
print(json.dumps({"ok": ok, "us": rounds}))
"""


def reference_comparison(events: list[Event], repeat: int) -> None:
    """xAPI through `rthub translate` against the reference translator on the same events."""
    from hub.translate import offline
    from tests.hub.translate.oracle import RUNNER, OracleUnavailable, python
    from tests.venvs import clean_environ

    supported = [event for event in events if supports("xapi", event["name"])]
    try:
        interpreter = python()
    except OracleUnavailable as exc:
        print(f"xapi vs the reference: skipped, its virtualenv is unavailable ({exc})")
        return
    with tempfile.TemporaryDirectory() as folder:
        lines = Path(folder) / "events.jsonl"
        lines.write_bytes(b"".join(json.dumps(event).encode() + b"\n" for event in supported))
        done = subprocess.run(
            [str(interpreter), "-c", REFERENCE_TIMER, str(RUNNER.parent), ACTOR, str(lines), str(repeat)],
            capture_output=True, text=True, env=clean_environ(), cwd=folder, timeout=900, check=False,
        )
        if done.returncode != 0:
            print(f"xapi vs the reference: the reference failed:\n{done.stderr[-2000:]}")
            return
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        same = [supported[number] for number in answer["ok"]]
        lines.write_bytes(b"".join(json.dumps(event).encode() + b"\n" for event in same * repeat))
        out = Path(folder) / "out.jsonl"
        command = argparse.ArgumentParser()
        offline.configure(command)
        ours = []
        for _ in range(3):
            started = time.process_time()
            code = offline.run(command.parse_args([str(lines), "--to", "xapi", "--actor-id", ACTOR, "-o", str(out)]),
                               stderr=io.StringIO())
            ours.append((time.process_time() - started) / (len(same) * repeat) * 1e6)
            if code != 0:
                sys.exit("rthub translate rejected events the reference translated")
        outputs = sum(1 for _ in out.open())
    reference, rthub = statistics.median(answer["us"]), statistics.median(ours)
    print(f"xapi through `rthub translate` vs the reference translator (event-routing-backends), "
          f"{len(same)} corpus events both translate x{repeat} ({outputs} statements), median of 3:")
    print(f"  reference    {reference:8.1f} µs/event   ({', '.join(f'{us:.1f}' for us in answer['us'])})")
    print(f"  rthub        {rthub:8.1f} µs/event   ({', '.join(f'{us:.1f}' for us in ours)})")
    print(f"  rthub is {reference / rthub:.1f}x faster (target >= 50x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="timing rounds; the best is kept")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the corpus per reference timing")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference translator")
    args = parser.parse_args(argv)
    events = corpus()
    for translator in ("xapi", "caliper"):
        report(translator, events, args.rounds)
    if not args.no_reference:
        reference_comparison(events, args.repeat)


if __name__ == "__main__":
    main()
