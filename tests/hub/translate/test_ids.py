"""Output ids for at-least-once delivery: the same event always gets the same ids, different outputs never share one.

A record store de-duplicates by id and answers 409 when a different statement reuses one; with one
fixed actor (as one consumer type sees every learner's events as the same kind of id, and the corpus
names few learners) the reference's scheme, uuid5(verb, actor + timestamp), gives 17 such collisions
on the shared corpus. rthub's ids are the UUID5 of the output's content.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import orjson
import pytest

from hub.translate import TRANSLATORS, supports, translate
from hub.translate.ids import OUTPUT_ID_NAMESPACE, content_id
from rthub_lms.events import Event
from tests import ROOT
from tests.hub.translate import fixtures
from tests.hub.translate.corpus import SETTINGS, event_files, load_event, require_corpus

ACTOR = "6b0f54b4-1e4c-4f43-a0cf-1b8c0ad6a0d2"


def _events() -> list[Event]:
    require_corpus()
    named = [load_event(name) for name in event_files() if "anonymous" not in name]
    return named + [fixtures.event(name) for name in sorted(fixtures.RAW_EVENTS)]


def _outputs(translator: str, events: list[Event]) -> list[dict[str, Any]]:
    return [
        output
        for event in events
        if supports(translator, event["name"])
        for output in translate(event, translator, actor_id=ACTOR, settings=SETTINGS)
    ]


def _content(output: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in output.items() if k != "id"}, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_no_two_different_outputs_share_an_id(translator: str) -> None:
    outputs = _outputs(translator, _events())
    contents_by_id: dict[str, set[bytes]] = {}
    for output in outputs:
        contents_by_id.setdefault(output["id"], set()).add(_content(output))
    collisions = {key: len(found) for key, found in contents_by_id.items() if len(found) > 1}
    assert collisions == {}
    distinct_contents = {_content(output) for output in outputs}
    assert len(contents_by_id) == len(distinct_contents) > 90


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_ids_are_uuids_of_the_documented_form(translator: str) -> None:
    for output in _outputs(translator, _events()):
        text = output["id"].removeprefix("urn:uuid:") if translator == "caliper" else output["id"]
        assert uuid.UUID(text).version == 5
        assert output["id"].startswith("urn:uuid:") == (translator == "caliper")


def test_content_id_is_uuid5_of_the_canonical_json() -> None:
    body = {"verb": {"id": "https://x/v"}, "actor": {"name": "é"}, "n": [1, 2.5, None]}
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    assert content_id(body) == str(uuid.uuid5(OUTPUT_ID_NAMESPACE, canonical))
    assert content_id({**body, "n": [1, 2.5]}) != content_id(body)


def test_a_child_statement_points_at_its_parent_by_the_parents_id() -> None:
    event = load_event("problem_check(server,multiple_questions,correct).json")
    parent, *children = translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    assert children
    assert {child["context"]["statement"]["id"] for child in children} == {parent["id"]}
    assert len({parent["id"], *(child["id"] for child in children)}) == 1 + len(children)


def test_ids_are_the_same_in_a_fresh_process_and_change_with_any_field() -> None:
    """Redelivery after a restart (new process, new hash seed) yields the very same ids."""
    events = _events()
    here = {translator: [output["id"] for output in _outputs(translator, events)] for translator in TRANSLATORS}
    script = (
        "import json, sys\n"
        "from tests.hub.translate.test_ids import TRANSLATORS, _events, _outputs\n"
        "events = _events()\n"
        "print(json.dumps({t: [o['id'] for o in _outputs(t, events)] for t in TRANSLATORS}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == here
    assert sum(len(found) for found in here.values()) > 130

    event = events[0]
    (first,) = translate(event, "caliper", actor_id=ACTOR, settings=SETTINGS)
    (other_actor,) = translate(event, "caliper", actor_id=ACTOR.replace("6b", "7c"), settings=SETTINGS)
    later = Event(**{**event, "timestamp": "2031-01-01T00:00:00.000001+00:00"})
    (later_one,) = translate(later, "caliper", actor_id=ACTOR, settings=SETTINGS)
    assert len({first["id"], other_actor["id"], later_one["id"]}) == 3
