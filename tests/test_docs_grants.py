"""Every grant or filter the README, docs/ and examples/ show works as written: each `event_types`
value matches an event name the translators know, and no event is seen under only some of its names
(`rthub_lms.catalogue.grant_warnings` is empty), so the documentation cannot drift from the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rthub_lms.catalogue import grant_warnings
from rthub_lms.grants import validate_filter
from tests import ROOT

SOURCES = sorted(
    [ROOT / "README.md", ROOT / "client" / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*")]
)


def examples(text: str) -> list[str]:
    """Each JSON object or list around an `"event_types"` key: from the innermost enclosing `{` (or the
    `[` right before it) to its matching bracket."""
    found = []
    start = 0
    while (key := text.find('"event_types"', start)) != -1:
        start = key + 1
        opening = text.rfind("{", 0, key)
        before = text[:opening].rstrip()
        if before.endswith("["):
            opening = len(before) - 1
        end = _closing(text, opening)
        if end is not None and text[opening:end] not in found:
            found.append(text[opening:end])
    return found


def _closing(text: str, opening: int) -> int | None:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(text[index], 0)
        if depth == 0:
            return index + 1
    return None


def all_examples() -> list[tuple[str, str]]:
    return [(str(path.relative_to(ROOT)), found) for path in SOURCES for found in examples(path.read_text())]


def test_the_examples_are_found() -> None:
    where = {source for source, _ in all_examples()}
    assert {"README.md", "docs/permissions.md", "docs/contract.md", "docs/auth.md"} <= where
    assert examples('x --grant \'{"courses": ["c"], "event_types": ["a", "b"]}\' y') == [
        '{"courses": ["c"], "event_types": ["a", "b"]}'
    ]
    assert examples('[{"event_types": ["a."]}, {"orgs": ["M"]}]') == ['[{"event_types": ["a."]}, {"orgs": ["M"]}]']
    assert examples('[{"orgs": ["M"]}, {"event_types": ["a."]}]') == ['{"event_types": ["a."]}']  # rules warn alone


@pytest.mark.parametrize(("source", "example"), all_examples())
def test_each_documented_grant_sees_what_it_says(source: str, example: str) -> None:
    rules = validate_filter(json.loads(example))
    assert grant_warnings(rules) == [], f"{source}: {example}"


def test_no_source_is_missing() -> None:
    assert all(Path(path).is_file() for path in SOURCES)
