"""Permissions through the real hub: a subscriber gets an event if and only if its grant (and filter) allows it.

Shrinking is off (each example is a real round trip). The oracle below is written from
docs/permissions.md independently of rthub_lms.grants, so a wiring or matcher mistake cannot hide
behind the code under test. The large sample against the matcher alone is in tests/lms/test_grants.py;
this is the smaller end-to-end sample.
"""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub
from tests.wsclient import collect, connect, quiet

COURSES = ["course-v1:MITx+6.002x+2026", "course-v1:MITx+18.01x+2026", "course-v1:HarvardX+CS50x+2026"]
SITES = ["lms.example.org", "courses.example.com"]
USERS = ["101", "102", "103"]
TYPES = ["play_video", "pause_video", "problem_check", "edx.course.enrollment.activated"]

COURSE_PATTERNS = [*COURSES, "course-v1:MITx+*", "*CS50x*"]
ORG_PATTERNS = ["MITx", "HarvardX", "*X"]
SITE_PATTERNS = [*SITES, "*.example.com", "LMS.Example.ORG"]
TYPE_PATTERNS = [*TYPES, "*_video", "edx.course.", "problem_*"]

FACT = {"courses": "course", "orgs": "org", "sites": "site", "users": "user", "event_types": "event_type"}


def _rule(values: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: value for key, value in values.items() if value}


rules = st.builds(
    _rule,
    st.fixed_dictionaries({
        "courses": st.lists(st.sampled_from(COURSE_PATTERNS), max_size=2, unique=True),
        "orgs": st.lists(st.sampled_from(ORG_PATTERNS), max_size=1, unique=True),
        "sites": st.lists(st.sampled_from(SITE_PATTERNS), max_size=1, unique=True),
        "users": st.lists(st.sampled_from(USERS), max_size=2, unique=True),
        "event_types": st.lists(st.sampled_from(TYPE_PATTERNS), max_size=2, unique=True),
    }),
)
grants = st.lists(rules, min_size=1, max_size=3)
filters = st.one_of(st.none(), rules.filter(bool))
facts = st.tuples(st.sampled_from(COURSES), st.sampled_from(SITES), st.sampled_from(USERS), st.sampled_from(TYPES))


def _holds(key: str, patterns: list[str], value: str) -> bool:
    for pattern in patterns:
        candidate, subject = (pattern.lower(), value.lower()) if key == "sites" else (pattern, value)
        if key == "event_types" and candidate.endswith(".") and not set("*?[") & set(candidate):
            if subject.startswith(candidate):
                return True
        elif fnmatch.fnmatchcase(subject, candidate):
            return True
    return False


def _visible(rules: list[dict[str, list[str]]], event_facts: dict[str, str]) -> bool:
    return any(all(_holds(key, values, event_facts[FACT[key]]) for key, values in rule.items()) for rule in rules)


def _templates() -> dict[str, dict[str, Any]]:
    """One simulated event of each type, to dress up with the facts under test."""
    found: dict[str, dict[str, Any]] = {}
    lms = SimulatedLMS(seed=41)
    while len(found) < len(TYPES):
        event = lms.next_event()
        if event["name"] in TYPES:
            found.setdefault(event["name"], event)
    return found


TEMPLATES = _templates()


def _event(course: str, site: str, user: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    event = orjson.loads(orjson.dumps(TEMPLATES[name]))
    org = course.removeprefix("course-v1:").split("+")[0]
    event["context"].update(course_id=course, org_id=org, host=site, user_id=int(user))
    if isinstance(event["data"], dict) and "user_id" in event["data"]:
        event["data"]["user_id"] = int(user)
    return event, {"course": course, "org": org, "site": site, "user": user, "event_type": name}


@settings(
    max_examples=12, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(grant=grants, subscription=filters, event_facts=st.lists(facts, min_size=8, max_size=16))
def test_subscriber_receives_exactly_what_grant_and_filter_allow(
    hub: Hub, grant: list[dict], subscription: dict | None, event_facts: list[tuple[str, str, str, str]]
) -> None:
    token = hub.token(grant=grant)
    events = [_event(*item) for item in event_facts]
    expected_rules = [*([subscription] if subscription else [])]
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)

    async def scenario() -> list[dict]:
        frame = {"type": "subscribe", "filter": subscription} if subscription else {"type": "subscribe"}
        ws = await connect(hub.ws, token, frame)
        # until the hub has applied the subscribe frame, so the events meet it in the live fan-out: a
        # subscribe has no acknowledgement to wait for
        await asyncio.sleep(0.05)
        cursors = [backend.send(event) for event, _ in events]
        wanted = [
            cursor for cursor, (_, fact) in zip(cursors, events, strict=True)
            if _visible(grant, fact) and (not expected_rules or _visible(expected_rules, fact))
        ]
        frames = await collect(ws, len(wanted)) + await quiet(ws, 0.25)
        await ws.close()
        return [f["cursor"] for f in frames], wanted

    received, wanted = asyncio.run(scenario())
    backend.close()
    assert received == wanted, orjson.dumps({"grant": grant, "filter": subscription}).decode()
