"""The Caliper models refuse what the 1.2 specification forbids."""

from __future__ import annotations

from typing import Any

import pytest

from hub.translate.caliper_models import CaliperEvent, CaliperValidationError, Entity

ACTOR = {"id": "https://lms.example.org/user/1", "type": "Person"}
VIDEO = {"id": "https://lms.example.org/xblock/v", "type": "VideoObject"}


def _event(**overrides: Any) -> CaliperEvent:
    fields: dict[str, Any] = {
        "type": "MediaEvent",
        "action": "Paused",
        "actor": ACTOR,
        "object": VIDEO,
        "event_time": "2024-03-05T10:11:12.345Z",
    }
    return CaliperEvent(**{**fields, **overrides})


def test_valid_event_serialises_with_context() -> None:
    out = _event(extensions={"transformerVersion": "rthub"}).validate().to_dict()
    assert out["@context"] == "http://purl.imsglobal.org/ctx/caliper/v1p2"
    assert out["eventTime"] == "2024-03-05T10:11:12.345Z"
    assert out["extensions"] == {"transformerVersion": "rthub"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"action": "Posted"}, "does not allow action 'Posted'"),
        ({"type": "PlayEvent"}, "unknown Caliper event type"),
        ({"object": {"id": "https://x/1", "type": "Message"}}, "`object` cannot be a Message"),
        ({"actor": {"id": "https://x/1", "type": "CourseOffering"}}, "must be an Agent"),
        ({"event_time": "2024-03-05T10:11:12+00:00"}, "eventTime"),
        ({"object": {"id": "not an iri", "type": "VideoObject"}}, "IRI"),
        ({"generated": {"id": "_:s", "type": "Score"}}, "`generated` cannot be a Score"),
    ],
)
def test_rule_violations_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(CaliperValidationError, match=message):
        _event(**overrides).validate()


def test_grade_event_needs_an_attempt_and_generates_a_score() -> None:
    attempt = Entity(id="https://x/attempt/1", type="Attempt").to_dict()
    score = Entity(id="_:score", type="Score", properties={"scoreGiven": 1}).to_dict()
    _event(type="GradeEvent", action="Graded", object=attempt, generated=score).validate()
    with pytest.raises(CaliperValidationError, match="`object` cannot be a VideoObject"):
        _event(type="GradeEvent", action="Graded", generated=score).validate()


def test_entities_need_an_iri_and_a_known_type() -> None:
    with pytest.raises(CaliperValidationError, match="IRI"):
        Entity(id="", type="Person")
    with pytest.raises(CaliperValidationError, match="unknown Caliper entity type"):
        Entity(id="https://x/1", type="Webpage")
