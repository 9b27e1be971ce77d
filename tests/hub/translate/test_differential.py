"""rthub's translators against the reference translator itself, run as a black box, on generated events.

For every event name the reference registers (xAPI and Caliper), hypothesis grows at least
`MIN_CASES` distinct events from real shapes (see `generate.py`: rthub's fixtures, which cover every
name, so a plain clone generates the same events as a tree with the shared corpus); each goes to the
reference (its own virtualenv and process, `oracle.py`) and to rthub, and the two translations are
compared field by field (`differences.py`). Every difference must be one documented in docs/translators.md.
A summary per family is written to `test-artifacts/differential.json`.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.translate import NoTranslation, TranslationError, translate
from rthub_lms.events import Event, normalise
from tests import ROOT
from tests.hub.translate import differences, generate, reference
from tests.hub.translate.corpus import SETTINGS
from tests.hub.translate.oracle import Oracle

# The anonymised id both translators are given: any fixed UUID of our own (the oracle is told it too).
ACTOR = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://rthub.invalid/differential-test-actor"))
MIN_CASES = 200
DOCS = ROOT / "docs" / "translators.md"
FAMILIES = (
    ("video", ("complete_video", "load_video", "play_video", "pause_video", "stop_video", "seek_video",
               "speed_change_video", "show_transcript", "hide_transcript", "video_", "edx.video.")),
    ("navigation", ("edx.ui.lms.",)),
    ("problems", ("problem_check", "showanswer", "edx.problem.", "edx.grades.problem.")),
    ("grades", ("edx.grades.course.", "edx.grades.subsection.")),
    ("enrollment, course pass/fail", ("edx.course.",)),
    ("completion", ("edx.completion.",)),
    ("forum", ("edx.forum.",)),
    ("special exams", ("edx.special_exam.",)),
)

# One worker computes the module's run (the reference over every generated event), first.
pytestmark = [pytest.mark.timeout(600), pytest.mark.peers, pytest.mark.slow]


def family(name: str) -> str:
    return next(label for label, prefixes in FAMILIES if name.startswith(prefixes))


@dataclass
class Run:
    registered: dict[str, list[str]]
    cases: Counter[str] = field(default_factory=Counter)
    compared: Counter[tuple[str, str]] = field(default_factory=Counter)
    found: Counter[differences.Difference] = field(default_factory=Counter)
    examples: dict[differences.Difference, dict[str, Any]] = field(default_factory=dict)


def _for_reference(event: Event) -> dict[str, Any]:
    """The normalised event (event-tracking's shape, what the hub receives) as the reference reads it.

    Its exam transformers read the payload from `event` (the tracking log's key), all others from
    `data`; both keys carry it. Lookups of other keys are unaffected (`data` is searched first).
    """
    return {**event, "event": event["data"]}


def _ours(translator: str, event: Event) -> tuple[list[dict[str, Any]] | None, str | None]:
    try:
        return translate(event, translator, actor_id=ACTOR, settings=SETTINGS), None
    except NoTranslation:
        return None, "unsupported"
    except (TranslationError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def run() -> Run:
    oracle = Oracle(ACTOR, SETTINGS.lms_root_url, reference.COURSE_NAME)
    try:
        result = Run(registered=oracle.registered)
        seeds = generate.seeds()
        names = sorted(set(result.registered["xapi"]) | set(result.registered["caliper"]))
        events = [normalise(raw) for name in names for raw in generate.generated(name, seeds, MIN_CASES)]
        requests = [(translator, event) for event in events for translator in ("xapi", "caliper")]
        answers = oracle.translate_many((translator, _for_reference(event)) for translator, event in requests)
    finally:
        oracle.close()
    for event in events:
        result.cases[event["name"]] += 1
    for (translator, event), answer in zip(requests, answers, strict=True):
        name = event["name"]
        if name not in result.registered[translator]:
            continue
        result.compared[(translator, name)] += 1
        ours, error = _ours(translator, event)
        for difference in differences.compare(translator, name, ours, error, answer, SETTINGS.transformer_version):
            result.found[difference] += 1
            result.examples.setdefault(difference, {"event": event, "reference": answer, "ours": ours or error})
    _write_summary(result)
    return result


def _write_summary(result: Run) -> None:
    table: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"events": set(), "cases": 0, "documented": Counter(), "unexplained": 0}
    )
    for (translator, name), count in result.compared.items():
        row = table[f"{translator} / {family(name)}"]
        row["events"].add(name)
        row["cases"] += count
    for difference, count in result.found.items():
        row = table[f"{difference.translator} / {family(difference.name)}"]
        tag = differences.explained_by(difference)
        if tag is None:
            row["unexplained"] += count
        else:
            row["documented"][tag] += count
    out = ROOT / "test-artifacts" / "differential.json"
    out.parent.mkdir(exist_ok=True)
    rows = {key: {**row, "events": len(row["events"])} for key, row in sorted(table.items())}
    out.write_text(json.dumps(rows, indent=1, default=dict))
    unexplained = [
        {"difference": [d.translator, d.name, d.kind, d.where], "count": n, "example": result.examples[d]}
        for d, n in sorted(result.found.items(), key=lambda item: (item[0].name, item[0].where))
        if differences.explained_by(d) is None
    ]
    (out.parent / "differential-unexplained.json").write_text(json.dumps(unexplained, indent=1, default=str))


def test_every_registered_name_gets_enough_generated_cases(run: Run) -> None:
    assert len(run.registered["xapi"]) == 65 and len(run.registered["caliper"]) == 35
    names = {name for found in run.registered.values() for name in found}
    short = {name: run.cases[name] for name in names if run.cases[name] < MIN_CASES}
    assert short == {}


def test_rthub_covers_every_name_the_reference_registers(run: Run) -> None:
    missing = {d for d in run.found if d.kind == "coverage"}
    assert missing == set()


def test_every_difference_is_fixed_or_documented(run: Run) -> None:
    unexplained = {d: n for d, n in run.found.items() if differences.explained_by(d) is None}
    report = [
        f"{n:5d}x {d.translator} {d.name} {d.kind} {d.where}\n"
        f"       e.g. {json.dumps(run.examples[d], default=str)[:1500]}"
        for d, n in sorted(unexplained.items(), key=lambda item: (item[0].translator, item[0].name, item[0].where))
    ]
    assert not report, f"{len(report)} unexplained differences:\n" + "\n".join(report[:40])


def test_every_documented_deviation_is_in_the_docs_and_still_occurs(run: Run) -> None:
    text = DOCS.read_text()
    tags = {entry.tag for entry in differences.DOCUMENTED}
    assert {tag for tag in tags if f"`{tag}`" not in text} == set()
    occurring = {differences.explained_by(d) for d in run.found}
    assert tags - occurring == set()
