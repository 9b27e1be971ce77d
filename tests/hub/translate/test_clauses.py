"""Every clause of xAPI 1.0.3 and Caliper 1.2 the output touches holds on generated events of every name.

For each registered name, `generate.generated` grows at least `MIN_CASES` distinct events (both LMS
shapes, values redrawn, each optional field dropped; fixed seeds); each is translated by both
translators and checked against `clauses.py`, written from the standards' text. A summary (events and
outputs checked per clause) goes to `test-artifacts/clauses.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement

from hub.translate import NoTranslation, TranslationError, caliper, translate, xapi
from rthub_lms.events import normalise
from tests import ROOT
from tests.hub.translate import clauses, generate
from tests.hub.translate.corpus import SETTINGS

ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"
MIN_CASES = 200
NAMES = sorted(set(xapi.BUILDERS) | set(caliper.BUILDERS))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def outputs(translator: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return translate(normalise(raw), translator, actor_id=ACTOR, settings=SETTINGS)
    except (NoTranslation, TranslationError):
        return []


@pytest.mark.parametrize("name", NAMES)
def test_every_clause_holds_on_generated_events(name: str) -> None:
    events = generate.generated(name, generate.seeds(), MIN_CASES)
    assert len(events) >= MIN_CASES
    found: Counter[tuple[str, str, str]] = Counter()
    checked: Counter[str] = Counter()
    for raw in events:
        for translator, check in clauses.CHECKS.items():
            for output in outputs(translator, raw):
                checked[translator] += 1
                args = (output, SETTINGS.lms_root_url) if translator == "xapi" else (output,)
                for clause, where in check(*args):
                    found[(translator, clause, where)] += 1
                if translator == "xapi":
                    BaseXapiStatement(**output)
    assert name not in xapi.BUILDERS or checked["xapi"] >= MIN_CASES // 2, "too few events translated"
    _record(name, len(events), checked)
    assert not found, f"{name}: {dict(found)}"


def test_the_clause_table_in_the_docs_lists_every_clause() -> None:
    text = (ROOT / "docs" / "translators.md").read_text()
    for clause in (*clauses.XAPI, *clauses.CALIPER):
        assert f"| `{clause.id}` |" in text, f"{clause.id} is not in docs/translators.md"


def test_the_checks_catch_what_they_claim() -> None:
    """Each clause, broken on purpose in one valid output, is reported (a check that cannot fail is none)."""
    statement = translate(normalise(generate.seeds()["edx.problem.completed"][0]), "xapi", actor_id=ACTOR,
                          settings=SETTINGS)[0]
    assert list(clauses.xapi_violations(statement, SETTINGS.lms_root_url)) == []
    broken = json.loads(json.dumps(statement))
    broken["object"]["id"] = broken["object"]["id"].split("/xblock/")[1]
    del broken["object"]["definition"]["interactionType"]
    broken["id"] = broken["id"].upper()
    reported = {clause for clause, _ in clauses.xapi_violations(broken, SETTINGS.lms_root_url)}
    assert {"x-one-iri-per-block", "x-interaction-type", "x-id-uuid"} <= reported
    (event,) = translate(normalise(generate.seeds()["play_video"][0]), "caliper", actor_id=ACTOR, settings=SETTINGS)
    assert list(clauses.caliper_violations(event)) == []
    broken = json.loads(json.dumps(event))
    broken["target"]["id"] = "_:MediaLocation"
    broken["object"]["courseName"] = "x"
    reported = {clause for clause, _ in clauses.caliper_violations(broken)}
    assert {"c-no-blank-node", "c-terms"} <= reported


def _record(name: str, events: int, checked: Counter[str]) -> None:
    folder = ROOT / "test-artifacts" / "clauses"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"events": events, "outputs": dict(checked)}))
