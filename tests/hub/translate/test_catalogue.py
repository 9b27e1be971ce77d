"""The event catalogue (`rthub_lms.catalogue`) is exactly what the translators map, and `rthub events`
shows what each name really becomes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hub.translate import TranslationSettings, caliper, translate, xapi
from hub.translate.catalogue import NONE
from rthub_lms.catalogue import FAMILIES, FAMILY_OF, KNOWN, SAME_EVENT
from tests import ROOT
from tests.hub.translate import fixtures

SETTINGS = TranslationSettings(lms_root_url="https://lms.example.org", transformer_version="rthub@test")
ACTOR = "0f7c2a4e-5b1d-4c3e-9a8f-7e6d5c4b3a21"
BROWSER_CHECK = fixtures.browser_problem_check(f"https://lms.example.org/courses/{fixtures.COURSE}/courseware/a/b/1")


def test_the_catalogue_is_every_name_a_translator_maps_and_nothing_else() -> None:
    assert set(KNOWN) == set(xapi.BUILDERS) | set(caliper.BUILDERS)
    listed = [name for names in FAMILIES.values() for name in names]
    assert len(listed) == len(set(listed)) == len(KNOWN)


@pytest.mark.parametrize("builders", [xapi.BUILDERS, caliper.BUILDERS], ids=["xapi", "caliper"])
def test_names_of_one_event_share_a_builder_in_each_translator(builders: dict) -> None:
    for group in SAME_EVENT:
        assert len({id(builders[name]) for name in group}) == 1, group
        assert len({FAMILY_OF[name] for name in group}) == 1, group


def test_every_mapped_name_shows_what_it_becomes() -> None:
    assert set(xapi.VERB_OF) == set(xapi.BUILDERS)
    assert set(caliper.ACTION_OF) == set(caliper.BUILDERS)


@pytest.mark.parametrize("name", sorted(xapi.BUILDERS))
def test_the_shown_xapi_verbs_are_the_ones_emitted(name: str) -> None:
    events = [fixtures.event(name), *([BROWSER_CHECK] if name == "problem_check" else [])]
    emitted = {
        next(iter(statement["verb"]["display"].values()))
        for event in events
        for statement in translate(event, "xapi", actor_id=ACTOR, settings=SETTINGS)
    }
    assert emitted <= set(xapi.VERB_OF[name])
    if name == "problem_check":
        assert emitted == set(xapi.VERB_OF[name])


@pytest.mark.parametrize("name", sorted(caliper.BUILDERS))
def test_the_shown_caliper_actions_are_the_ones_emitted(name: str) -> None:
    events = [fixtures.event(name), *([BROWSER_CHECK] if name == "problem_check" else [])]
    emitted = {
        f"{event['type']}/{event['action']}"
        for source in events
        for event in translate(source, "caliper", actor_id=ACTOR, settings=SETTINGS)
    }
    assert emitted <= set(caliper.ACTION_OF[name])
    if name == "problem_check":
        assert emitted == set(caliper.ACTION_OF[name])


def rthub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_rthub_events_lists_every_name_with_its_family_and_standards() -> None:
    listed = rthub("events", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["events"]}
    assert set(rows) == set(KNOWN)
    assert rows["play_video"] == {
        "name": "play_video", "family": "video", "xapi": ["played"], "caliper": ["MediaEvent/Resumed"],
        "same_event": ["edx.video.played"],
    }
    assert rows["edx.forum.thread.voted"]["caliper"] is None
    assert rows["edx.forum.thread.followed"]["xapi"] is None

    table = rthub("events", "--family", "forum")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "family", "xapi", "caliper"]
    assert [line.split()[0] for line in lines[1:]] == list(FAMILIES["forum"])
    assert lines[1 + FAMILIES["forum"].index("edx.forum.thread.voted")].split() == [
        "edx.forum.thread.voted", "forum", "voted", NONE,
    ]

    wrong = rthub("events", "--family", "videos")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
