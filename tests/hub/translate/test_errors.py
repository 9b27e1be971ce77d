"""Malformed events fail with `TranslationError` naming the field; unmapped ones with `NoTranslation`."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.translate import (
    TRANSLATORS,
    NoTranslation,
    TranslationError,
    TranslationSettings,
    supports,
    translate,
)
from rthub_lms.events import Event, normalise
from tests.hub.translate import fixtures

SETTINGS = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@test")
ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"


def _without(name: str, path: str) -> Event:
    raw = copy.deepcopy(fixtures.RAW_EVENTS[name])
    payload_key = "event" if "event" in raw else "data"
    where, key = path.split(".")
    target = raw[payload_key] if where == "data" else raw["context"]
    target.pop(key)
    return normalise(raw)


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_unmapped_event_name(translator: str) -> None:
    assert not supports(translator, "edx.bi.user.account.registered")
    event = normalise(
        {"name": "edx.bi.user.account.registered", "timestamp": "2024-01-01T00:00:00Z", "data": {}}
    )
    with pytest.raises(NoTranslation, match="no mapping"):
        translate(event, translator, actor_id=ACTOR, settings=SETTINGS)


def test_unknown_translator_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown translator"):
        translate(fixtures.event("play_video"), "csv", actor_id=ACTOR, settings=SETTINGS)


@pytest.mark.parametrize(
    ("name", "missing", "translators"),
    [
        ("play_video", "data.id", TRANSLATORS),
        ("play_video", "context.course_id", TRANSLATORS),
        ("problem_check", "data.problem_id", TRANSLATORS),
        ("edx.ui.lms.link_clicked", "data.target_url", TRANSLATORS),
        ("edx.ui.lms.sequence.tab_selected", "data.id", TRANSLATORS),
        ("edx.grades.subsection.grade_calculated", "data.block_id", TRANSLATORS),
        ("edx.special_exam.timed.attempt.submitted", "data.exam_content_id", TRANSLATORS),
        ("edx.forum.thread.created", "data.id", TRANSLATORS),
        ("edx.forum.thread.created", "data.commentable_id", ("caliper",)),
        ("speed_change_video", "data.new_speed", ("xapi",)),
    ],
)
def test_missing_required_field_is_named(name: str, missing: str, translators: tuple[str, ...]) -> None:
    event = _without(name, missing)
    for translator in translators:
        with pytest.raises(TranslationError, match=missing.replace(".", r"\.")):
            translate(event, translator, actor_id=ACTOR, settings=SETTINGS)


def test_wrong_types_are_named() -> None:
    raw = copy.deepcopy(fixtures.RAW_EVENTS["pause_video"])
    raw["data"]["currentTime"] = "soon"
    for translator in TRANSLATORS:
        with pytest.raises(TranslationError, match=r"data\.currentTime"):
            translate(normalise(raw), translator, actor_id=ACTOR, settings=SETTINGS)


def test_missing_actor_id_is_rejected() -> None:
    with pytest.raises(TranslationError, match="actor_id"):
        translate(fixtures.event("play_video"), "xapi", actor_id="", settings=SETTINGS)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(fixtures.RAW_EVENTS)))
    raw = copy.deepcopy(fixtures.RAW_EVENTS[name])
    payload_key = "event" if "event" in raw else "data"
    payload = raw[payload_key]
    if isinstance(payload, dict) and payload:
        for key in draw(st.lists(st.sampled_from(sorted(payload)), max_size=3)):
            payload[key] = draw(JSON)
    if draw(st.booleans()):
        raw[payload_key] = draw(JSON)
    if draw(st.booleans()):
        raw["context"]["course_id"] = draw(JSON)
    return name, raw


@settings(max_examples=300, deadline=None)
@given(st.composite(_mutated)(), st.sampled_from(TRANSLATORS))
def test_garbled_events_only_raise_typed_errors(case: tuple[str, dict[str, Any]], translator: str) -> None:
    _, raw = case
    event = normalise(raw)
    try:
        output = translate(event, translator, actor_id=ACTOR, settings=SETTINGS)
    except (NoTranslation, TranslationError):
        return
    assert isinstance(output, list)
    assert output
