"""The Caliper models refuse what the 1.2 specification forbids."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from hub.translate.caliper import random_urn
from hub.translate.caliper_models import CaliperEvent, CaliperValidationError, Entity

ACTOR = {"id": "https://lms.example.org/user/1", "type": "Person"}
VIDEO = {"id": "https://lms.example.org/xblock/v", "type": "VideoObject"}


def _event(**overrides: Any) -> CaliperEvent:
    fields: dict[str, Any] = {
        "id": "urn:uuid:4f1c6a43-51f4-4d6f-8d3e-0f9f2d8c1a11",
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
        ({"id": "4f1c6a43"}, "urn:uuid"),
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


def test_random_event_ids_are_distinct_v4_uuids_across_a_fork() -> None:
    parent_ids = {random_urn() for _ in range(600)}  # crosses a 256-id pool refill
    assert len(parent_ids) == 600
    assert all(uuid.UUID(urn.removeprefix("urn:uuid:")).version == 4 for urn in parent_ids)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, random_urn().encode())
        os._exit(0)
    os.waitpid(child, 0)
    child_id = os.read(reader, 100).decode()
    os.close(reader)
    os.close(writer)
    assert child_id != random_urn()
    assert child_id not in parent_ids
