"""How rthub's output and the reference's differ for one event, and which differences are documented.

A difference is (translator, event name, kind, where). Kinds: `value` (both have the field, values
differ), `only-ours` / `only-reference` (one side has the field), `count` (number of outputs),
`ours-rejects` / `reference-rejects` (one side raised; `where` is the reason), `coverage` (one side
has no mapping). The reference side is first adjusted for the deviations that apply to every event
(`tests/hub/translate/reference.py`); what remains must match an entry of `DOCUMENTED`, each of which
names its paragraph in docs/translators.md by its tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.hub.translate import reference


@dataclass(frozen=True, slots=True)
class Difference:
    translator: str
    name: str
    kind: str
    where: str


@dataclass(frozen=True, slots=True)
class Documented:
    """Differences matching all three patterns (full matches) are explained by the docs paragraph `tag`."""

    tag: str
    translator: str
    names: str
    kind: str
    where: str

    def explains(self, difference: Difference) -> bool:
        return (
            self.translator in ("*", difference.translator)
            and re.fullmatch(self.names, difference.name) is not None
            and re.fullmatch(self.kind, difference.kind) is not None
            and re.fullmatch(self.where, difference.where) is not None
        )


_MISSING = r"TranslationError: .*: missing required field `{}`"

# Each entry is explained in docs/translators.md under "Deviations from the reference", by its tag.
DOCUMENTED: tuple[Documented, ...] = (
    Documented(
        "course-key-either-place",
        "*",
        r"edx\.course\..*|edx\.grades\.course\.grade_calculated",
        "reference-rejects",
        r"ValueError: Could not get value for (context|data)\.course_id|InvalidKeyError: .*: None",
    ),
    Documented(
        "forum-grouping-without-course",
        "xapi",
        r"edx\.forum\..*",
        "reference-rejects",
        r"AttributeError: 'NoneType' object has no attribute 'grouping'",
    ),
    Documented(
        "question-grouping-without-course",
        "xapi",
        r"problem_check",
        "reference-rejects",
        r"AttributeError: 'NoneType' object has no attribute 'parent'",
    ),
    Documented("forum-path-privacy", "xapi", r"edx\.forum\..*", "value", r"object\.id"),
    Documented(
        "absent-optional-field",
        "xapi",
        r"edx\.grades\.problem\.submitted",
        "reference-rejects",
        r"KeyError: 'weighted_(earned|possible)'",
    ),
    Documented(
        "absent-optional-field",
        "caliper",
        r"problem_check",
        "reference-rejects",
        r"KeyError: 'extensions'",
    ),
    Documented(
        "absent-optional-field",
        "xapi",
        r"edx\.ui\.lms\.(sequence\.)?outline\.selected",
        "reference-rejects",
        r"TypeError: Value must be a string.*",
    ),
    Documented(
        "valid-iri",
        "*",
        r".*",
        "ours-rejects",
        _MISSING.format(r"data\.(id|target_url|block_id|exam_content_id|attempt_code|problem_id)"),
    ),
    Documented("valid-iri", "*", r"problem_check", "ours-rejects", _MISSING.format(r"context\.course_id")),
    Documented(
        "caliper-sequence-outline",
        "caliper",
        r"edx\.ui\.lms\.sequence\.outline\.selected",
        "reference-rejects",
        r"ValueError: Could not get value for data\.id",
    ),
    Documented(
        "referer-only-for-browser",
        "*",
        r"problem_check",
        "reference-rejects",
        r"ValueError: Could not get value for context\.referer",
    ),
)


def explained_by(difference: Difference) -> str | None:
    for entry in DOCUMENTED:
        if entry.explains(difference):
            return entry.tag
    return None


def compare(
    translator: str,
    name: str,
    ours: list[dict[str, Any]] | None,
    ours_error: str | None,
    answer: dict[str, Any],
    version: str,
) -> list[Difference]:
    """Every difference between rthub's answer and the reference's for one event."""
    if "unsupported" in answer:
        return [] if ours_error == "unsupported" else [Difference(translator, name, "coverage", "reference")]
    if ours_error == "unsupported":
        return [Difference(translator, name, "coverage", "ours")]
    if "error" in answer:
        return [] if ours_error else [Difference(translator, name, "reference-rejects", _reason(answer["error"]))]
    if ours is None:
        return [Difference(translator, name, "ours-rejects", _reason(ours_error or ""))]
    theirs = answer["output"]
    if len(ours) != len(theirs):
        return [Difference(translator, name, "count", f"{len(ours)} vs {len(theirs)}")]
    found: list[Difference] = []
    for mine, their in zip(ours, theirs, strict=True):
        if translator == "xapi":
            adjusted = reference.with_ids_of(mine, reference.xapi(their, version))
        else:
            adjusted, mine = reference.caliper(their, version), reference.ours_caliper(mine)
        found.extend(Difference(translator, name, kind, where) for kind, where in _diff(mine, adjusted, ""))
    return found


def _reason(error: str) -> str:
    """An error message without its event-specific values (kept: the exception type and the field)."""
    return re.sub(r"\s+in event \".*\"$", "", error.split("\n")[0])[:160]


def _diff(ours: Any, theirs: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in theirs:
                yield "only-ours", path
            elif key not in ours:
                yield "only-reference", path
            else:
                yield from _diff(ours[key], theirs[key], path)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
            yield from _diff(mine, their, f"{where}[{index}]")
    elif not _same(where, ours, theirs):
        yield "value", where


def _same(where: str, ours: Any, theirs: Any) -> bool:
    if (ours == theirs and type(ours) is type(theirs)) or (_number(ours) and _number(theirs) and ours == theirs):
        return True
    if where == "timestamp" and isinstance(ours, str) and isinstance(theirs, str):
        return _instant(ours) == _instant(theirs)
    return False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _instant(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text
