"""Grant warnings: an `event_types` value that matches no known event name, or an event seen under
only some of its names, is flagged with what was probably meant; nothing is ever refused."""

from __future__ import annotations

from rthub_lms.catalogue import FAMILIES, KNOWN, SAME_EVENT, covering, grant_warnings, matching, suggestions
from rthub_lms.grants import validate_grant

CLASSIC_VIDEO = [group[0] for group in SAME_EVENT]


def warnings(*rules: dict) -> list[str]:
    return grant_warnings(validate_grant(list(rules)))


def test_edx_video_alone_is_warned_about_the_web_players_classic_names() -> None:
    (warning,) = warnings({"courses": ["course-v1:MITx+6.002x+*"], "event_types": ["edx.video.*", "problem_check"]})
    assert warning.startswith("grant[0].event_types: ")
    assert "web video player" in warning
    for name in CLASSIC_VIDEO:
        assert name in warning
    assert "edx.video.played" not in warning.split("add ", 1)[1]


def test_a_value_matching_no_known_name_names_what_it_probably_meant() -> None:
    unmatched = warnings({"event_types": ["problem_check", "edx.problem_check"]}, {"event_types": ["edx.vido.*"]})
    assert len(unmatched) == 2
    assert unmatched[0].startswith("grant[0].event_types[1]: 'edx.problem_check' matches no event name")
    assert "did you mean problem_check" in unmatched[0]
    assert unmatched[1].startswith("grant[1].event_types[0]: 'edx.vido.*'")
    assert "edx.video.*" in unmatched[1]


def test_suggestions_keep_the_values_style_and_add_the_events_other_names() -> None:
    assert suggestions("edx.vido.")[0] == "edx.video."
    assert suggestions("edx.vido.*")[0] == "edx.video.*"
    meant = suggestions("edx.video.play")
    assert "edx.video.played" in meant and "play_video" in meant  # the same event's other name
    assert suggestions("forums") == ["edx.forum."]  # a family word: the prefix naming it whole
    assert set(suggestions("grades")) <= set(FAMILIES["grade"])  # no prefix names grades alone
    assert suggestions("zzzz") == []
    assert "rthub events" in warnings({"event_types": ["zzzz"]})[0]


def test_values_match_as_grants_match() -> None:
    assert matching("edx.video.") == matching("edx.video.*") != []
    assert "play_video" not in matching("edx.video.")
    assert matching("play_video") == ["play_video"]
    assert set(matching("*video*")) | set(matching("*_transcript")) == set(FAMILIES["video"])
    assert matching("edx.videos.") == []


def test_grants_that_see_whole_events_draw_no_warning() -> None:
    assert warnings({"event_types": ["*video*", "*_transcript", "problem_check"]}) == []
    assert warnings({"event_types": ["play_video", "edx.video.played"]}) == []
    assert warnings({"event_types": ["edx.course.enrollment.", "edx.grades."]}, {"orgs": ["MITx"]}, {}) == []
    assert warnings() == []
    assert warnings({"event_types": sorted(KNOWN)}) == []


def test_an_unknown_name_is_warned_about_once_per_value_and_never_refused() -> None:
    grant = validate_grant([{"event_types": ["edx.new.event.in.a.later.release", "problem_check"]}])
    assert grant == [{"event_types": ["edx.new.event.in.a.later.release", "problem_check"]}]
    assert len(grant_warnings(grant)) == 1


def test_each_family_has_values_that_see_it_whole_and_nothing_else() -> None:
    for family, names in FAMILIES.items():
        values = covering(family)
        assert not grant_warnings(validate_grant([{"event_types": list(values)}]))
        assert {name for value in values for name in matching(value)} == set(names), family
    assert covering("video") == ("*video*", "*_transcript")
    assert covering("navigation") == ("edx.ui.lms.",)
    assert {"*video*", "*_transcript"} <= set(suggestions("videos"))
