"""Every covered event translates, from rthub's own fixtures, into output valid for its standard."""

from __future__ import annotations

import json

import orjson
import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement
from tincan import Statement

from hub.translate import NoTranslation, TranslationSettings, caliper, supports, translate, xapi
from rthub_lms.events import normalise
from tests.hub.translate import fixtures, spec

SETTINGS = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@test")
ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"
CALIPER_UNMAPPED = {"edx.forum.thread.voted", "edx.forum.response.voted"} | {
    f"edx.forum.{family}.{action}"
    for family in ("thread", "response", "comment")
    for action in ("reported", "unreported")
}


def test_every_covered_name_has_an_own_fixture() -> None:
    assert len(xapi.BUILDERS) == 65
    assert set(xapi.BUILDERS) | set(caliper.BUILDERS) <= set(fixtures.RAW_EVENTS)


@pytest.mark.parametrize("name", sorted(xapi.BUILDERS))
def test_xapi_statements_are_valid(name: str) -> None:
    statements = translate(fixtures.event(name), "xapi", actor_id=ACTOR, settings=SETTINGS)
    assert statements
    for statement in statements:
        encoded = orjson.dumps(statement)
        round_trip = json.loads(Statement.from_json(encoded.decode()).to_json("1.0.3"))
        assert round_trip["id"] == statement["id"]
        assert round_trip["verb"] == statement["verb"]
        assert round_trip["object"]["id"] == statement["object"]["id"]
        BaseXapiStatement(**statement)
        assert statement["version"] == "1.0.0"
        assert statement["actor"] == {
            "objectType": "Agent",
            "account": {"homePage": SETTINGS.lms_root_url, "name": ACTOR},
        }
        assert (
            statement["context"]["extensions"]["https://w3id.org/xapi/openedx/extension/transformer-version"]
            == SETTINGS.transformer_version
        )


@pytest.mark.parametrize("name", sorted(fixtures.RAW_EVENTS))
def test_caliper_events_follow_the_specification(name: str) -> None:
    assert supports("caliper", name) == (name not in CALIPER_UNMAPPED)
    if name in CALIPER_UNMAPPED:
        with pytest.raises(NoTranslation):
            translate(fixtures.event(name), "caliper", actor_id=ACTOR, settings=SETTINGS)
        return
    (event,) = translate(fixtures.event(name), "caliper", actor_id=ACTOR, settings=SETTINGS)
    assert spec.problems(event) == []
    assert event["actor"] == {"id": f"{SETTINGS.lms_root_url}/user/{ACTOR}", "type": "Person"}
    assert event["extensions"]["transformerVersion"] == SETTINGS.transformer_version
    assert "session" not in event
    orjson.dumps(event)


def test_caliper_envelope() -> None:
    events = translate(fixtures.event("play_video"), "caliper", actor_id=ACTOR, settings=SETTINGS)
    sent = caliper.envelope(events, "https://rthub.example.org/sensor", "2024-03-05T10:11:13.000Z")
    assert sent == {
        "sensor": "https://rthub.example.org/sensor",
        "sendTime": "2024-03-05T10:11:13.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": events,
    }
    with pytest.raises(ValueError, match="sendTime"):
        caliper.envelope(events, "https://rthub.example.org/sensor", "yesterday")
    with pytest.raises(ValueError, match="sensor"):
        caliper.envelope(events, "not an iri", "2024-03-05T10:11:13.000Z")


def test_xapi_ids_are_deterministic_and_per_actor() -> None:
    event = fixtures.event("edx.video.paused")
    first = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    again = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    other = translate(event, "xapi", actor_id="9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", settings=SETTINGS)
    assert first == again
    assert other[0]["id"] != first[0]["id"]
    assert other[0]["actor"]["account"]["name"] != ACTOR


def test_multi_question_problem_yields_parent_and_children() -> None:
    raw = fixtures.RAW_EVENTS["problem_check"]
    submission = dict(raw["event"]["submission"])
    second = "9a8b7c6d5e4f30211203a4b5c6d7e8f9_3_1"
    submission[second] = {
        "question": "",
        "answer": ["a", "b"],
        "response_type": "choiceresponse",
        "correct": False,
    }
    event = normalise({**raw, "event": {**raw["event"], "submission": submission}})
    parent, *children = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    assert len(children) == 2
    # As the reference: the problem is described by its first question naming a response type.
    assert parent["object"]["definition"]["description"] == {"en-US": "Which is a prime?"}
    assert parent["result"]["response"] == "seven"
    for child in children:
        assert child["context"]["statement"] == {"objectType": "StatementRef", "id": parent["id"]}
        assert child["context"]["contextActivities"]["parent"] == [parent["object"]]
        BaseXapiStatement(**child)
    assert children[1]["object"]["id"].endswith("9a8b7c6d5e4f30211203a4b5c6d7e8f9_3_1")
    assert children[1]["result"] == {"success": False, "response": '["a", "b"]'}
    assert "description" not in children[1]["object"]["definition"]  # an empty question is left out
    assert len({statement["id"] for statement in (parent, *children)}) == 3


@pytest.mark.parametrize(
    ("referer", "block"),
    [
        ("https://lms.example.org/xblock/block-v1:RthubX+T101+2024+type@vertical+block@v1", fixtures.PROBLEM),
        (
            "https://lms.example.org/courses/x/courseware/a/b/?activate_block_id="
            "block-v1%3ARthubX%2BT101%2B2024%2Btype%40sequential%2Bblock%40s1",
            "block-v1:RthubX+T101+2024+type@sequential+block@s1",
        ),
    ],
)
def test_browser_problem_check_object(referer: str, block: str) -> None:
    event = fixtures.browser_problem_check(referer)
    (statement,) = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    (caliper_event,) = translate(event, "caliper", actor_id=ACTOR, settings=SETTINGS)
    assert (
        statement["object"]["id"]
        == caliper_event["object"]["id"]
        == f"{SETTINGS.lms_root_url}/xblock/{block}"
    )
    assert referer not in json.dumps([statement, caliper_event])
