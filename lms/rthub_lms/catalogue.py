"""The event names rthub translates, by family, and what a grant's `event_types` miss of them.

The translators (`hub.translate.xapi`, `hub.translate.caliper`) map exactly these names;
tests/hub/translate/test_catalogue.py holds the two equal. The catalogue lives at the bottom so the
client registry (auth) can judge a grant without importing the hub.

`grant_warnings` never refuses anything: a newer LMS may emit names rthub does not know yet. It flags
an `event_types` value that matches no known name (with the names it probably meant), and a rule that
sees an event under one of its names but not under the others: Open edX's web video player emits
`play_video`, the mobile apps `edx.video.played`, so `edx.video.*` alone misses every web video event.
"""

from __future__ import annotations

import difflib
import re

from rthub_lms.grants import event_type_matcher

_FORUM = tuple(
    f"edx.forum.{kind}.{action}"
    for kind, actions in (
        ("thread", ("created", "edited", "deleted", "reported", "unreported", "voted", "viewed", "followed",
                    "unfollowed")),
        ("response", ("created", "edited", "deleted", "reported", "unreported", "voted")),
        ("comment", ("created", "edited", "deleted", "reported", "unreported")),
    )
    for action in actions
)

# One event under each of its names: the classic name first (web player), then the newer ones.
SAME_EVENT: tuple[tuple[str, ...], ...] = (
    ("load_video", "edx.video.loaded"),
    ("play_video", "edx.video.played"),
    ("pause_video", "edx.video.paused"),
    ("stop_video", "edx.video.stopped"),
    ("complete_video", "edx.video.completed"),
    ("seek_video", "edx.video.position.changed"),
    ("show_transcript", "edx.video.transcript.shown", "edx.video.closed_captions.shown", "video_show_cc_menu"),
    ("hide_transcript", "edx.video.transcript.hidden", "edx.video.closed_captions.hidden", "video_hide_cc_menu"),
)

# Family -> its names, in the order `rthub events` lists them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "video": (*(name for group in SAME_EVENT for name in group), "speed_change_video"),
    "navigation": (
        "edx.ui.lms.link_clicked",
        "edx.ui.lms.outline.selected",
        "edx.ui.lms.sequence.outline.selected",
        "edx.ui.lms.sequence.next_selected",
        "edx.ui.lms.sequence.previous_selected",
        "edx.ui.lms.sequence.tab_selected",
    ),
    "problem": (
        "problem_check",
        "showanswer",
        "edx.problem.hint.demandhint_displayed",
        "edx.problem.completed",
        "edx.grades.problem.submitted",
    ),
    "enrollment": (
        "edx.course.enrollment.activated",
        "edx.course.enrollment.mode_changed",
        "edx.course.enrollment.deactivated",
    ),
    "grade": (
        "edx.course.grade.passed.first_time",
        "edx.course.grade.now_passed",
        "edx.course.grade.now_failed",
        "edx.grades.course.grade_calculated",
        "edx.grades.subsection.grade_calculated",
    ),
    "completion": ("edx.completion.block_completion.changed",),
    "exam": tuple(
        f"edx.special_exam.{kind}.attempt.{step}"
        for kind in ("practice", "proctored", "timed")
        for step in ("created", "submitted")
    ),
    "forum": _FORUM,
}

FAMILY_OF: dict[str, str] = {name: family for family, names in FAMILIES.items() for name in names}
KNOWN: frozenset[str] = frozenset(FAMILY_OF)

MAX_SUGGESTIONS = 8

# Families no prefix names whole, seen whole by globs (tests/lms/test_catalogue.py checks they do).
_GLOBS = {"video": ("*video*", "*_transcript")}
# Why a family's events go by several names, said when a grant sees only some of them.
_WHY = {"video": "Open edX's web video player emits play_video, pause_video, ..., its mobile apps edx.video.*"}
_SIBLINGS: dict[str, tuple[str, ...]] = {name: group for group in SAME_EVENT for name in group}
# Every literal beginning of a known name that ends at a dot ("edx.", "edx.video.", ...): prefixes to suggest.
_PREFIXES: tuple[str, ...] = tuple(
    sorted({name[: index + 1] for name in KNOWN for index, char in enumerate(name) if char == "."})
)


def covering(family: str) -> tuple[str, ...]:
    """`event_types` values that see a family whole and nothing else: the longest prefix doing so,
    else the family's own globs, else its names."""
    whole = [
        prefix for prefix in _PREFIXES
        if all(name.startswith(prefix) == (FAMILY_OF[name] == family) for name in KNOWN)
    ]
    return (max(whole, key=len),) if whole else _GLOBS.get(family, FAMILIES[family])


_WILDCARDS = re.compile(r"[*?]|\[[^]]*\]")


def matching(pattern: str) -> list[str]:
    """The known names an `event_types` value matches, as a grant matches them (exact, prefix or glob)."""
    holds = event_type_matcher(pattern)
    return sorted(name for name in KNOWN if holds(name))


def suggestions(pattern: str) -> list[str]:
    """What a value that matches no known name probably meant: the closest names, with the other names
    of their event since the LMS emits either (first for a plain name), the closest prefixes in the
    value's own style (`edx.vido.*` -> `edx.video.*`), and the values seeing a family it names whole
    (`forums` -> `edx.forum.`)."""
    core = _WILDCARDS.sub("", pattern)
    patterned = core != pattern or pattern.endswith(".")
    prefixes = []
    if patterned:
        tail = "" if core == pattern else "*"
        prefixes = [prefix + tail for prefix in difflib.get_close_matches(core, _PREFIXES, n=2, cutoff=0.7)]
    families = [
        value
        for word in re.findall(r"[a-z]+", core.lower())
        if (family := word.removesuffix("s").replace("enrolment", "enrollment")) in FAMILIES
        for value in covering(family)
    ]
    names = [
        other for name in difflib.get_close_matches(core, sorted(KNOWN), n=3, cutoff=0.6)
        for other in _SIBLINGS.get(name, (name,))
    ]
    found = [*prefixes, *families, *names] if patterned else [*names, *families]
    return list(dict.fromkeys(found))[:MAX_SUGGESTIONS]


def grant_warnings(rules: list[dict[str, list[str]]], field: str = "grant") -> list[str]:
    """What a validated grant (or filter) probably did not mean, one sentence each; `[]` when nothing."""
    warnings = []
    for index, rule in enumerate(rules):
        patterns = rule.get("event_types")
        if not patterns:
            continue
        where = f"{field}[{index}].event_types"
        seen: set[str] = set()
        for position, pattern in enumerate(patterns):
            names = matching(pattern)
            seen.update(names)
            if not names:
                warnings.append(_unmatched(f"{where}[{position}]", pattern))
        missing = [name for group in SAME_EVENT if seen.intersection(group) for name in group if name not in seen]
        if missing:
            families = sorted({FAMILY_OF[name] for name in missing})
            reasons = "; ".join(_WHY[family] for family in families if family in _WHY)
            warnings.append(
                f"{where}: sees some events under one of their names only ({reasons}); "
                f"add {', '.join(missing)}"
            )
    return warnings


def _unmatched(where: str, pattern: str) -> str:
    meant = suggestions(pattern)
    hint = f"did you mean {', '.join(meant)}?" if meant else "`rthub events` lists the known names"
    return f"{where}: {pattern!r} matches no event name rthub translates; {hint}"
