"""Grant validation, event facts, compiled matchers, filter narrowing and the fan-out index."""

from __future__ import annotations

import fnmatch
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rthub_lms.events import Event
from rthub_lms.grants import (
    EventFacts,
    GrantError,
    GrantIndex,
    compile_grant,
    event_facts,
    narrow,
    org_from_key,
    validate_filter,
    validate_grant,
)

ORGS = ["MITx", "HarvardX", "edX", "Org.One"]
COURSES = [
    "course-v1:MITx+6.002x+2024_T1",
    "course-v1:MITx+6.002x+2025_T1",
    "course-v1:MITx+18.01x+2024_T1",
    "course-v1:HarvardX+CS50+2024",
    "course-v1:edX+DemoX+Demo_Course",
    "course-v1:Org.One+Intro+R1",
    "HarvardX/PH207x/2012_Fall",
]
EVENT_TYPES = [
    "problem_check",
    "play_video",
    "edx.video.played",
    "edx.video.paused",
    "edx.video.closed_captions.shown",
    "edx.course.enrollment.activated",
    "edx.grades.subsection.grade_calculated",
]
SITES = ["lms.example.com", "courses.mitx.org", "localhost:18000"]
USERS = ["1", "2", "3", "42"]

FACT_OF = {"courses": "course", "orgs": "org", "sites": "site", "users": "user", "event_types": "event_type"}


def make_event(name: str = "problem_check", data: Any = None, **context: Any) -> Event:
    return Event(name=name, timestamp="2024-05-01T10:00:00+00:00", data=data or {}, context=context)


def facts_of(**context: Any) -> EventFacts:
    name = context.pop("name", "problem_check")
    return event_facts(make_event(name, **context))


def sees(grant: list[dict[str, Any]], **context: Any) -> bool:
    return compile_grant(validate_grant(grant)).matches(facts_of(**context))


# --- validation -------------------------------------------------------------------------------


def test_validate_normalises_rules() -> None:
    rules = validate_grant(
        [
            {"courses": ["course-v1:MITx+*"], "users": [7, "8", 7]},
            {"sites": ["LMS.Example.com"], "event_types": ["edx.video.", "problem_check"]},
            {},
        ]
    )
    assert rules == [
        {"courses": ["course-v1:MITx+*"], "users": ["7", "8"]},
        {"sites": ["lms.example.com"], "event_types": ["edx.video.", "problem_check"]},
        {},
    ]


def test_empty_grant_is_valid_and_denies_everything() -> None:
    assert validate_grant([]) == []
    assert not sees([], course_id=COURSES[0], org_id="MITx", host="lms.example.com", user_id=1)


@pytest.mark.parametrize(
    ("grant", "field", "fragment"),
    [
        ({"courses": ["x"]}, "grant", "list of rules"),
        (["courses"], "grant[0]", "object"),
        ([{}, {"course": ["x"]}], "grant[1].course", "unknown constraint"),
        ([{"courses": []}], "grant[0].courses", "non-empty list"),
        ([{"courses": "course-v1:MITx+A+B"}], "grant[0].courses", "non-empty list"),
        ([{"orgs": ["MITx", ""]}], "grant[0].orgs[1]", "non-empty string"),
        ([{"orgs": ["MITx", "   "]}], "grant[0].orgs[1]", "non-empty string"),
        ([{"orgs": [" MITx"]}], "grant[0].orgs[0]", "whitespace"),
        ([{"event_types": [3]}], "grant[0].event_types[0]", "non-empty string"),
        ([{"users": [True]}], "grant[0].users[0]", "non-empty string"),
        ([{"users": ["1*"]}], "grant[0].users[0]", "exactly"),
        ([{"sites": [None]}], "grant[0].sites[0]", "non-empty string"),
    ],
)
def test_validate_names_the_bad_field(grant: object, field: str, fragment: str) -> None:
    with pytest.raises(GrantError) as caught:
        validate_grant(grant)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_validate_filter_shapes() -> None:
    assert validate_filter(None) == []
    assert validate_filter({}) == []
    assert validate_filter([]) == []
    assert validate_filter({"orgs": ["MITx"]}) == [{"orgs": ["MITx"]}]
    assert validate_filter([{"orgs": ["MITx"]}, {"users": [1]}]) == [{"orgs": ["MITx"]}, {"users": ["1"]}]
    with pytest.raises(GrantError) as caught:
        validate_filter({"courses": [1]})
    assert caught.value.field == "filter.courses[0]"
    with pytest.raises(GrantError) as caught:
        validate_filter([{"orgs": ["a"]}, {"nope": ["a"]}])
    assert caught.value.field == "filter[1].nope"
    with pytest.raises(GrantError) as caught:
        validate_filter("MITx")
    assert caught.value.field == "filter"


# --- event facts --------------------------------------------------------------------------------


def test_event_facts_reads_context() -> None:
    event = make_event(
        "edx.video.played",
        course_id="course-v1:MITx+6.002x+2024_T1",
        org_id="MITx",
        host="LMS.Example.com",
        user_id=42,
    )
    assert event_facts(event) == EventFacts(
        course="course-v1:MITx+6.002x+2024_T1",
        org="MITx",
        site="lms.example.com",
        user="42",
        event_type="edx.video.played",
    )


def test_event_facts_fallbacks() -> None:
    facts = event_facts(make_event(data={"course_id": "course-v1:edX+DemoX+T1", "user_id": "5"}))
    assert (facts.course, facts.org, facts.user) == ("course-v1:edX+DemoX+T1", "edX", "5")
    # context.org_id wins over the org in the course key; context.course_id over data.course_id.
    facts = event_facts(
        make_event(data={"course_id": "course-v1:edX+A+B"}, course_id="course-v1:MITx+C+D", org_id="Other")
    )
    assert (facts.course, facts.org) == ("course-v1:MITx+C+D", "Other")
    empty = event_facts(make_event(course_id="", org_id="", host="", user_id=""))
    assert (empty.course, empty.org, empty.site, empty.user) == (None, None, None, None)
    assert event_facts(make_event(data="not an object")).course is None


@pytest.mark.parametrize(
    ("key", "org"),
    [
        ("course-v1:MITx+6.002x+2024_T1", "MITx"),
        ("block-v1:HarvardX+CS50+2024+type@problem+block@abc", "HarvardX"),
        ("ccx-v1:edX+DemoX+Demo+ccx@3", "edX"),
        ("HarvardX/PH207x/2012_Fall", "HarvardX"),
        ("i4x://MITx/6.002x/problem/p1", "MITx"),
        ("course-v1:+A+B", None),
        ("course-v1:MITx", None),
        ("foo:MITx+A+B", None),
        ("MITx/6.002x", None),
        ("//", None),
        ("plain", None),
    ],
)
def test_org_from_key(key: str, org: str | None) -> None:
    assert org_from_key(key) == org
    assert event_facts(make_event(course_id=key)).org == org


# --- matching semantics -------------------------------------------------------------------------


def test_course_exact_and_glob() -> None:
    assert sees([{"courses": [COURSES[0]]}], course_id=COURSES[0])
    assert not sees([{"courses": [COURSES[0]]}], course_id=COURSES[1])
    assert sees([{"courses": ["course-v1:MITx+6.002x+*"]}], course_id=COURSES[1])
    assert not sees([{"courses": ["course-v1:MITx+6.002x+*"]}], course_id=COURSES[2])
    assert sees([{"courses": ["course-v1:MITx+6.00?x+2024_T1"]}], course_id=COURSES[0])
    assert sees([{"courses": ["course-v1:[HM]*"]}], course_id=COURSES[3])
    # Case matters for course keys.
    assert not sees([{"courses": ["course-v1:mitx+*"]}], course_id=COURSES[0])


def test_org_from_context_or_course_key() -> None:
    assert sees([{"orgs": ["MITx"]}], course_id=COURSES[0])
    assert sees([{"orgs": ["HarvardX"]}], course_id="HarvardX/PH207x/2012_Fall")
    assert sees([{"orgs": ["Org.One"]}], org_id="Org.One")
    assert not sees([{"orgs": ["MITx"]}], course_id=COURSES[0], org_id="HarvardX")
    assert sees([{"orgs": ["*X"]}], course_id=COURSES[3])


def test_site_is_case_insensitive_and_may_be_a_glob() -> None:
    assert sees([{"sites": ["LMS.example.com"]}], host="lms.EXAMPLE.com")
    assert sees([{"sites": ["*.example.com"]}], host="lms.example.com")
    assert not sees([{"sites": ["*.example.com"]}], host="lms.example.org")
    assert not sees([{"sites": ["lms.example.com"]}], host="lms.example.com:8000")


def test_users_exact() -> None:
    assert sees([{"users": [42]}], user_id=42)
    assert sees([{"users": ["42"]}], user_id="42")
    assert not sees([{"users": [42]}], user_id=420)


def test_event_types_exact_prefix_glob() -> None:
    video = [{"event_types": ["edx.video."]}]
    assert sees(video, name="edx.video.played")
    assert sees(video, name="edx.video.closed_captions.shown")
    assert not sees(video, name="edx.videos.played")
    assert not sees(video, name="play_video")
    assert sees([{"event_types": ["edx.video.*"]}], name="edx.video.paused")
    assert sees([{"event_types": ["problem_check"]}], name="problem_check")
    assert not sees([{"event_types": ["problem_check"]}], name="problem_check_fail")
    assert sees([{"event_types": ["edx.*.played"]}], name="edx.video.played")
    several = [{"event_types": ["edx.video.", "edx.grades.", "problem_check", "*enrollment*"]}]
    assert sees(several, name="edx.grades.subsection.grade_calculated")
    assert sees(several, name="edx.course.enrollment.activated")
    assert not sees(several, name="edx.bookmark.added")


def test_missing_fact_never_matches_even_a_star() -> None:
    assert not sees([{"courses": ["*"]}], host="lms.example.com")
    assert not sees([{"users": ["1"]}], course_id=COURSES[0])
    assert sees([{"courses": ["*"]}], course_id=COURSES[0])


def test_empty_rule_matches_all_events() -> None:
    assert sees([{}])
    assert sees([{}], course_id=COURSES[0], host="x", user_id=1, name="anything")


def test_rule_is_a_conjunction_and_grant_a_disjunction() -> None:
    grant = [
        {"courses": ["course-v1:MITx+*"], "event_types": ["edx.video."]},
        {"orgs": ["HarvardX"], "users": [7]},
    ]
    assert sees(grant, course_id=COURSES[0], name="edx.video.played")
    assert not sees(grant, course_id=COURSES[0], name="problem_check")
    assert sees(grant, course_id=COURSES[3], user_id=7)
    assert not sees(grant, course_id=COURSES[3], user_id=8)


def test_filter_only_narrows() -> None:
    grant = compile_grant(validate_grant([{"orgs": ["MITx"]}]))
    mitx_video = facts_of(course_id=COURSES[0], name="edx.video.played")
    mitx_problem = facts_of(course_id=COURSES[0], name="problem_check")
    harvard_video = facts_of(course_id=COURSES[3], name="edx.video.played")
    video_only = narrow(grant, validate_filter({"event_types": ["edx.video."]}))
    assert video_only.matches(mitx_video)
    assert not video_only.matches(mitx_problem)
    # A filter asking for more than the grant allows sees nothing extra.
    widen = narrow(grant, validate_filter([{"orgs": ["HarvardX"]}, {}]))
    assert not widen.matches(harvard_video)
    assert widen.matches(mitx_problem)
    assert narrow(grant, None) is grant
    assert narrow(grant, validate_filter({})) is grant
    assert not narrow(compile_grant([]), validate_filter({})).matches(mitx_video)


# --- the index ----------------------------------------------------------------------------------


def test_index_set_replace_remove() -> None:
    index = GrantIndex()
    index.set("a", compile_grant(validate_grant([{"courses": [COURSES[0]]}])))
    index.set("b", compile_grant(validate_grant([{"orgs": ["MITx"]}, {"event_types": ["edx.video."]}])))
    index.set("c", compile_grant(validate_grant([{}])))
    index.set("d", compile_grant([]))
    assert len(index) == 4
    facts = facts_of(course_id=COURSES[0], name="problem_check")
    assert index.matching(facts) == {"a", "b", "c"}
    assert index.matches_any(facts)
    index.set("a", compile_grant(validate_grant([{"courses": [COURSES[1]]}])))
    assert index.matching(facts) == {"b", "c"}
    index.remove("c")
    index.remove("missing")
    assert index.matching(facts) == {"b"}
    assert index.matching(facts_of(course_id=COURSES[3], name="problem_check")) == set()
    assert not index.matches_any(facts_of(course_id=COURSES[3], name="problem_check"))
    index.remove("b")
    assert len(index) == 2
    assert index.matching(facts) == set()


# --- properties ---------------------------------------------------------------------------------


def oracle(rules: list[dict[str, list[str]]], facts: EventFacts) -> bool:
    """The grant semantics written as plainly as possible, independent of the compiler."""
    return any(
        all(_holds(key, values, getattr(facts, FACT_OF[key])) for key, values in r.items()) for r in rules
    )


def _holds(key: str, values: list[str], fact: str | None) -> bool:
    if fact is None:
        return False
    for value in values:
        is_glob = any(char in value for char in "*?[")
        if key == "event_types" and value.endswith(".") and not is_glob:
            if fact.startswith(value):
                return True
        elif fnmatch.fnmatchcase(fact, value):
            return True
    return False


COURSE_PATTERNS = [*COURSES, "course-v1:MITx+*", "course-v1:MITx+6.002x+*", "*CS50*", "course-v1:?ITx+*", "*"]
ORG_PATTERNS = [*ORGS, "*X", "Org.*", "[HM]*"]
SITE_PATTERNS = [*SITES, "LMS.Example.COM", "*.example.com", "localhost:*"]
TYPE_PATTERNS = [
    *EVENT_TYPES,
    "edx.video.",
    "edx.grades.",
    "edx.",
    "edx.video.*",
    "*video*",
    "edx.*.played",
    "edx.vid",
]
USER_VALUES: list[Any] = [*USERS, 1, 42, 7]

rule_strategy = st.fixed_dictionaries(
    {},
    optional={
        "courses": st.lists(st.sampled_from(COURSE_PATTERNS), min_size=1, max_size=3),
        "orgs": st.lists(st.sampled_from(ORG_PATTERNS), min_size=1, max_size=2),
        "sites": st.lists(st.sampled_from(SITE_PATTERNS), min_size=1, max_size=2),
        "users": st.lists(st.sampled_from(USER_VALUES), min_size=1, max_size=2),
        "event_types": st.lists(st.sampled_from(TYPE_PATTERNS), min_size=1, max_size=3),
    },
)
grant_strategy = st.lists(rule_strategy, max_size=3)
filter_strategy = st.one_of(st.none(), rule_strategy, st.lists(rule_strategy, max_size=2))


@st.composite
def event_strategy(draw: st.DrawFn) -> Event:
    context: dict[str, Any] = {}
    data: dict[str, Any] = {}
    course = draw(st.sampled_from([None, *COURSES]))
    if course is not None:
        (context if draw(st.booleans()) else data)["course_id"] = course
    org = draw(st.sampled_from([None, None, *ORGS]))
    if org is not None:
        context["org_id"] = org
    site = draw(st.sampled_from([None, *SITES, "LMS.EXAMPLE.COM"]))
    if site is not None:
        context["host"] = site
    user = draw(st.sampled_from([None, *USERS, 7, 1]))
    if user is not None:
        (context if draw(st.booleans()) else data)["user_id"] = user
    return make_event(draw(st.sampled_from(EVENT_TYPES)), data=data, **context)


@settings(max_examples=400, deadline=None)
@given(grant=grant_strategy, filt=filter_strategy, events=st.lists(event_strategy(), min_size=1, max_size=10))
def test_matcher_and_narrow_agree_with_the_oracle(grant: list[Any], filt: Any, events: list[Event]) -> None:
    rules = validate_grant(grant)
    filter_rules = validate_filter(filt)
    assert validate_grant(rules) == rules  # normalised output is accepted unchanged
    matcher = compile_grant(rules)
    narrowed = narrow(matcher, filter_rules)
    for event in events:
        facts = event_facts(event)
        assert matcher.matches(facts) == oracle(rules, facts)
        expected = oracle(rules, facts) and (not filter_rules or oracle(filter_rules, facts))
        assert narrowed.matches(facts) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clients=st.lists(st.tuples(grant_strategy, filter_strategy), min_size=1, max_size=15),
    removed=st.sets(st.integers(min_value=0, max_value=14), max_size=4),
    events=st.lists(event_strategy(), min_size=1, max_size=15),
)
def test_index_equals_checking_every_matcher(
    clients: list[tuple[Any, Any]], removed: set[int], events: list[Event]
) -> None:
    index = GrantIndex()
    matchers = {}
    for key, (grant, filt) in enumerate(clients):
        matchers[key] = narrow(compile_grant(validate_grant(grant)), validate_filter(filt))
        index.set(key, matchers[key])
    # Re-setting a key replaces it, and removal forgets it.
    for key in removed:
        if key in matchers:
            del matchers[key]
            index.remove(key)
    assert len(index) == len(matchers)
    for event in events:
        facts = event_facts(event)
        expected = {key for key, matcher in matchers.items() if matcher.matches(facts)}
        assert index.matching(facts) == expected
        assert index.matches_any(facts) == bool(expected)


def test_index_equals_loop_on_a_large_random_population() -> None:
    """A large deterministic sample: 1,000 keyed grants (with re-sets and removals) x 3,000 events."""
    rng = random.Random(4)

    def rule() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if rng.random() < 0.7:
            out["courses"] = rng.sample(COURSE_PATTERNS, rng.randint(1, 2))
        if rng.random() < 0.25:
            out["orgs"] = rng.sample(ORG_PATTERNS, 1)
        if rng.random() < 0.15:
            out["sites"] = rng.sample(SITE_PATTERNS, 1)
        if rng.random() < 0.1:
            out["users"] = rng.sample(USER_VALUES, 2)
        if rng.random() < 0.4:
            out["event_types"] = rng.sample(TYPE_PATTERNS, rng.randint(1, 3))
        return out

    index = GrantIndex()
    matchers = {}
    for key in range(1_000):
        grant = validate_grant([rule() for _ in range(rng.randint(0, 3))])
        filt = validate_filter([rule()] if rng.random() < 0.3 else None)
        matchers[key] = narrow(compile_grant(grant), filt)
        index.set(key, matchers[key])
    for key in rng.sample(range(1_000), 200):
        matchers[key] = compile_grant(validate_grant([rule()]))
        index.set(key, matchers[key])
    for key in rng.sample(range(1_000), 100):
        del matchers[key]
        index.remove(key)
    events = []
    for _ in range(3_000):
        context: dict[str, Any] = {}
        if rng.random() < 0.9:
            context["course_id"] = rng.choice(COURSES)
        if rng.random() < 0.2:
            context["org_id"] = rng.choice(ORGS)
        if rng.random() < 0.8:
            context["host"] = rng.choice(SITES)
        if rng.random() < 0.9:
            context["user_id"] = rng.choice(USERS)
        events.append(make_event(rng.choice(EVENT_TYPES), **context))
    hits = 0
    for event in events:
        facts = event_facts(event)
        expected = {key for key, matcher in matchers.items() if matcher.matches(facts)}
        assert index.matching(facts) == expected
        hits += len(expected)
    assert hits > 0
