"""No personal data in any translation: the fixtures carry known values, none may come out."""

from __future__ import annotations

import orjson
import pytest

from hub.translate import NoTranslation, TranslationSettings, supports, translate
from rthub_lms.events import Event, normalise
from tests.hub.translate import fixtures

SETTINGS = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@test")
ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"
MARKERS = [*fixtures.PII.values(), "pii-referer-marker", "Piiperson", "wanda"]


@pytest.mark.parametrize("translator", ["xapi", "caliper"])
@pytest.mark.parametrize("name", sorted(fixtures.RAW_EVENTS))
def test_no_personal_data_in_output(name: str, translator: str) -> None:
    if not supports(translator, name):
        with pytest.raises(NoTranslation):
            translate(fixtures.event(name), translator, actor_id=ACTOR, settings=SETTINGS)
        return
    _assert_no_personal_data(fixtures.event(name), translator)


@pytest.mark.parametrize("translator", ["xapi", "caliper"])
@pytest.mark.parametrize(("name", "form"), [(name, form) for name, forms in fixtures.FORMS.items() for form in forms])
def test_no_personal_data_in_output_of_any_form(name: str, form: str, translator: str) -> None:
    _assert_no_personal_data(normalise(fixtures.FORMS[name][form]), translator)


def _assert_no_personal_data(event: Event, translator: str) -> None:
    encoded = orjson.dumps(translate(event, translator, actor_id=ACTOR, settings=SETTINGS)).decode()
    assert event["context"]["session"] == fixtures.PII["session"]  # the input does carry it
    leaked = [marker for marker in MARKERS if marker.lower() in encoded.lower()]
    assert leaked == []
    assert "session" not in encoded.lower()


def test_forum_iri_never_copies_an_unrelated_request_path() -> None:
    raw = {**fixtures.RAW_EVENTS["edx.forum.thread.viewed"]}
    raw["context"] = {**raw["context"], "path": f"/api/discussion/v1/users/{fixtures.PII['username']}/"}
    (statement,) = translate(normalise(raw), "xapi", actor_id=ACTOR, settings=SETTINGS)
    thread = raw["event"]["id"]
    assert statement["object"]["id"] == f"{SETTINGS.lms_root_url}/api/discussion/v1/threads/{thread}"
