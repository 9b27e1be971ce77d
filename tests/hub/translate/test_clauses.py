"""Every clause of xAPI 1.0.3 and Caliper 1.2 the output touches holds on generated events of every name.

For each registered name, `generate.generated` grows at least `MIN_CASES` distinct events (both LMS
shapes, values redrawn, each optional field dropped; fixed seeds), as many again for each further form
of a name (`FORMS`); each is translated by both translators and checked against `clauses.py`, written
from the standards' text; each Caliper event is also checked inside the Sensor API envelope the hub's
Caliper sender wraps it in. A summary (events and outputs per name and form) goes to
`test-artifacts/clauses/`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement

from hub.delivery.webhook.formats.caliper import CaliperSender
from hub.delivery.webhook.outbox import Item
from hub.translate import NoTranslation, TranslationError, caliper, translate, xapi
from rthub_lms.events import normalise
from tests import ROOT
from tests.hub.translate import clauses, generate
from tests.hub.translate.corpus import SETTINGS

ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"
MIN_CASES = 200
NAMES = sorted(set(xapi.BUILDERS) | set(caliper.BUILDERS))
SENDER = CaliperSender("Bearer clause-test", "https://hub.example/caliper/sensor")
EVENT_TRACKING_KEYS = {"name", "timestamp", "data", "context"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass(frozen=True, slots=True)
class Form:
    """What one form of an event (`generate.form`) translates to: the xAPI verbs and Caliper type/actions
    its outputs use, and whether xAPI states more than one statement per event (a parent, then one child
    per question, each referring to the parent)."""

    verbs: frozenset[str]
    caliper: frozenset[str]
    several_statements: bool = False


# The forms each such name must be generated in; a name not listed has one (its fixture's).
FORMS = {
    "problem_check": {
        "server": Form(frozenset({"evaluated"}), frozenset({"GradeEvent/Graded"})),
        "server, multiple questions": Form(frozenset({"evaluated"}), frozenset({"GradeEvent/Graded"}), True),
        "browser": Form(frozenset({"attempted"}), frozenset({"AssessmentEvent/Submitted"})),
    },
}


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
    shapes: dict[str, set[str]] = {"xapi": set(), "caliper": set()}
    forms: dict[str, list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]] = defaultdict(list)
    now = datetime.now(UTC)
    for raw in events:
        event_time = normalise(raw)["timestamp"]
        # Outputs state this instant (x-timestamp-instant): an LMS event is in the past, so are they.
        assert datetime.fromisoformat(event_time) <= now, f"generated in the future: {event_time}"
        shape = "event-tracking" if set(raw) <= EVENT_TRACKING_KEYS else "tracking-log"
        translated = {translator: outputs(translator, raw) for translator in clauses.CHECKS}
        forms[generate.form(raw)].append((raw, translated))
        for translator, check in clauses.CHECKS.items():
            for output in translated[translator]:
                checked[translator] += 1
                shapes[translator].add(shape)
                for clause, where in check(output, SETTINGS.lms_root_url, event_time=event_time):
                    found[(translator, clause, where)] += 1
                if translator == "xapi":
                    BaseXapiStatement(**output)
                else:
                    for clause, where in clauses.envelope_violations(orjson.loads(SENDER.body([_queued(output)]))):
                        found[(translator, clause, where)] += 1
    for translator, builders in (("xapi", xapi.BUILDERS), ("caliper", caliper.BUILDERS)):
        if name in builders:
            assert checked[translator] >= MIN_CASES // 2, f"too few events translated to {translator}"
            assert shapes[translator] == {"event-tracking", "tracking-log"}, f"{translator}: {shapes[translator]}"
    if name in FORMS:
        assert set(forms) == set(FORMS[name]), f"{name}: forms generated {sorted(forms)}"
        for label, expected in FORMS[name].items():
            _check_form(label, expected, forms[label])
    _record(name, len(events), checked, {label: len(found_events) for label, found_events in forms.items()})
    assert not found, f"{name}: {dict(found)}"


def _check_form(
    label: str, expected: Form, events: list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]
) -> None:
    """At least `MIN_CASES` events of this form, both LMS shapes translated, and the outputs it maps to."""
    assert len(events) >= MIN_CASES, f"{label}: {len(events)} events"
    for translator in ("xapi", "caliper"):
        translated = [(raw, found[translator]) for raw, found in events if found[translator]]
        assert len(translated) >= MIN_CASES // 2, f"{label}: {len(translated)} translated to {translator}"
        shapes = {"event-tracking" if set(raw) <= EVENT_TRACKING_KEYS else "tracking-log" for raw, _ in translated}
        assert shapes == {"event-tracking", "tracking-log"}, f"{label}, {translator}: {shapes}"
        if translator == "caliper":
            kinds = {f"{event['type']}/{event['action']}" for _, found in translated for event in found}
            assert kinds == expected.caliper, f"{label}: {kinds}"
            assert all(len(found) == 1 for _, found in translated), label
            continue
        verbs = {statement["verb"]["id"].rsplit("/", 1)[1] for _, found in translated for statement in found}
        assert verbs == expected.verbs, f"{label}: {verbs}"
        statements = sum(len(found) for _, found in translated)
        if not expected.several_statements:
            assert statements == len(translated), f"{label}: {statements} statements for {len(translated)} events"
            continue
        assert statements > len(translated), f"{label}: {statements} statements for {len(translated)} events"
        for _, (parent, *children) in translated:
            assert children, label
            refs = {child["context"]["statement"]["id"] for child in children}
            assert refs == {parent["id"]}, label


def _queued(event: dict[str, Any]) -> Item:
    """A translated event as the webhook outbox holds it (a frame whose `data` is the event)."""
    return Item(source="clauses", id="1-0", cursor="1-0", body=orjson.dumps({"data": event}).decode())


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


def _record(name: str, events: int, checked: Counter[str], forms: dict[str, int]) -> None:
    folder = ROOT / "test-artifacts" / "clauses"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"events": events, "outputs": dict(checked), "forms": forms}
    (folder / f"{name}.json").write_text(json.dumps(summary))


def test_the_checks_of_every_object_envelope_and_time_can_fail() -> None:
    """The clauses on nested properties, times, blank nodes, block IRIs and envelopes, each broken on purpose."""
    seed = generate.seeds()["edx.grades.subsection.grade_calculated"][0]
    event_time = normalise(seed)["timestamp"]
    (statement,) = translate(normalise(seed), "xapi", actor_id=ACTOR, settings=SETTINGS)
    assert list(clauses.xapi_violations(statement, SETTINGS.lms_root_url, event_time=event_time)) == []
    broken = json.loads(json.dumps(statement))
    broken["result"]["score"]["percent"] = 1.0
    broken["context"]["platform"] = "rthub"
    broken["context"]["language"] = "english please"
    broken["object"]["definition"]["extensions"] = {"https://rthub.example/ext": "_:b0"}
    broken["timestamp"] = "2030-01-01T00:00:00+00:00"
    del broken["verb"]
    reported = {where: clause for clause, where in clauses.xapi_violations(broken, SETTINGS.lms_root_url,
                                                                            event_time=event_time)}
    assert reported["result.score.percent"] == "x-statement-properties"
    assert reported["context.language"] == "x-context-properties"
    assert reported["timestamp"] == "x-timestamp-instant"
    assert reported["verb"] == "x-required"
    assert "x-no-blank-node" in reported.values()
    about_activity = {**statement, "context": {"platform": "rthub"}}
    assert list(clauses.xapi_violations(about_activity, SETTINGS.lms_root_url)) == []
    about_statement = {**about_activity, "object": {"objectType": "StatementRef", "id": statement["id"]}}
    assert list(clauses.xapi_violations(about_statement, SETTINGS.lms_root_url)) == [
        ("x-context-properties", "context.platform")
    ]

    (event,) = translate(normalise(seed), "caliper", actor_id=ACTOR, settings=SETTINGS)
    assert list(clauses.caliper_violations(event, SETTINGS.lms_root_url, event_time=event_time)) == []
    broken = json.loads(json.dumps(event))
    broken["object"]["extensions"]["isPartOf"] = {"type": "CourseOffering"}
    broken["object"]["id"] = "https://elsewhere.example/xblock/" + broken["object"]["id"].split("/xblock/")[1]
    broken["eventTime"] = "2030-01-01T00:00:00.000Z"
    reported = {where: clause for clause, where in clauses.caliper_violations(broken, SETTINGS.lms_root_url,
                                                                               event_time=event_time)}
    assert reported["event.object.extensions.isPartOf"] == "c-no-blank-node"
    assert reported["object.id"] == "c-one-iri-per-block"
    assert reported["eventTime"] == "c-event-time-instant"
    navigation = {**event, "type": "NavigationEvent", "action": "NavigatedTo", "object": event["actor"]}
    assert ("c-object-type", "object") in set(clauses.caliper_violations(navigation))

    envelope = orjson.loads(SENDER.body([_queued(event)]))
    assert list(clauses.envelope_violations(envelope)) == []
    for key, value in (("dataVersion", "http://purl.imsglobal.org/ctx/caliper/v1p1"), ("sendTime", "2024-01-01"),
                       ("sensor", "hub"), ("data", []), ("extra", 1)):
        assert list(clauses.envelope_violations({**envelope, key: value})), key
