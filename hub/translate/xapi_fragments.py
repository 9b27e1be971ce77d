"""xAPI building blocks made once through tincan's model classes, then reused as plain dicts.

Building a statement from tincan objects costs ~150 µs; the parts that repeat across events (verbs,
actors, course and block activities with their definitions) are built and validated by tincan once,
serialised, cached, and only the varying parts (timestamp, result, extensions) are assembled per event.
Cached fragments are shared between statements: treat translated statements as read-only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache, lru_cache
from typing import Any

from tincan import Activity, ActivityDefinition, Agent, AgentAccount, LanguageMap, Verb
from tincan.conversions.iso8601 import jsonify_timedelta

from hub.translate.base import TranslationError

XAPI_VERSION = "1.0.3"  # the specification followed (tincan serialises fragments by it)
# A statement's `version`: xAPI 1.0.3 Data 2.4.10 "If Learning Record Providers set the Statement version,
# they MUST set it to 1.0.0" (statements of any 1.0.x follow the 1.0.0 data model); the reference sends 1.0.3.
STATEMENT_VERSION = "1.0.0"

# Verb key -> IRI; the display text (`en`) is the key itself.
VERBS = {
    "asked": "http://adlnet.gov/expapi/verbs/asked",
    "attempted": "http://adlnet.gov/expapi/verbs/attempted",
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "deleted": "https://w3id.org/xapi/dod-isd/verbs/deleted",
    "earned": "http://id.tincanapi.com/verb/earned",
    "edited": "https://w3id.org/xapi/acrossx/verbs/edited",
    "evaluated": "https://w3id.org/xapi/acrossx/verbs/evaluated",
    "failed": "http://adlnet.gov/expapi/verbs/failed",
    "initialized": "http://adlnet.gov/expapi/verbs/initialized",
    "interacted": "http://adlnet.gov/expapi/verbs/interacted",
    "navigated": "https://w3id.org/xapi/dod-isd/verbs/navigated",
    "passed": "http://adlnet.gov/expapi/verbs/passed",
    "paused": "https://w3id.org/xapi/video/verbs/paused",
    "played": "https://w3id.org/xapi/video/verbs/played",
    "posted": "https://w3id.org/xapi/acrossx/verbs/posted",
    "progressed": "http://adlnet.gov/expapi/verbs/progressed",
    "registered": "http://adlnet.gov/expapi/verbs/registered",
    "reported": "https://w3id.org/xapi/acrossx/verbs/reported",
    "seeked": "https://w3id.org/xapi/video/verbs/seeked",
    "terminated": "http://adlnet.gov/expapi/verbs/terminated",
    "unregistered": "http://id.tincanapi.com/verb/unregistered",
    "unreported": "https://w3id.org/xapi/openedx/verb/unreported",
    "viewed": "http://id.tincanapi.com/verb/viewed",
    "voted": "https://w3id.org/xapi/openedx/verb/voted",
}

ACTIVITY_TYPES = {
    "attempt": "http://adlnet.gov/expapi/activities/attempt",
    "course": "http://adlnet.gov/expapi/activities/course",
    "discussion": "http://id.tincanapi.com/activitytype/discussion",
    "interaction": "http://adlnet.gov/expapi/activities/cmi.interaction",
    "link": "http://adlnet.gov/expapi/activities/link",
    "module": "http://adlnet.gov/expapi/activities/module",
    "practice": "https://w3id.org/xapi/openedx/activity/practice-assessment",
    "proctored": "https://w3id.org/xapi/openedx/activity/proctored-assessment",
    "question": "http://adlnet.gov/expapi/activities/question",
    "resource": "http://id.tincanapi.com/activitytype/resource",
    "solution": "http://id.tincanapi.com/activitytype/solution",
    "supplemental-info": "https://w3id.org/xapi/acrossx/extensions/supplemental-info",
    "timed": "https://w3id.org/xapi/openedx/activity/timed-assessment",
    "video": "https://w3id.org/xapi/video/activity-type/video",
}


class Ext:
    """Extension IRIs used by the reference translator."""

    TRANSFORMER_VERSION = "https://w3id.org/xapi/openedx/extension/transformer-version"
    VIDEO_LENGTH = "https://w3id.org/xapi/video/extensions/length"
    VIDEO_TIME = "https://w3id.org/xapi/video/extensions/time"
    VIDEO_TIME_FROM = "https://w3id.org/xapi/video/extensions/time-from"
    VIDEO_TIME_TO = "https://w3id.org/xapi/video/extensions/time-to"
    VIDEO_CC_ENABLED = "https://w3id.org/xapi/video/extensions/cc-enabled"
    SPEED_FROM = "https://w3id.org/xapi/openedx/extension/speed-from"
    SPEED_TO = "https://w3id.org/xapi/openedx/extension/speed-to"
    PROGRESS = "https://w3id.org/xapi/cmi5/result/extensions/progress"
    ACROSSX_TYPE = "https://w3id.org/xapi/acrossx/extensions/type"
    TOTAL_ITEMS = "https://w3id.org/xapi/acrossx/extensions/total-items"
    TIME_LIMIT = "https://w3id.org/xapi/acrossx/extensions/time-limit"
    ENDING_POINT = "http://id.tincanapi.com/extension/ending-point"
    STARTING_POSITION = "http://id.tincanapi.com/extension/starting-position"
    ATTEMPT_ID = "http://id.tincanapi.com/extension/attempt-id"
    DURATION = "http://id.tincanapi.com/extension/duration"
    ATTEMPT_STARTED = "https://w3id.org/xapi/openedx/extension/attempt-started"
    ATTEMPT_COMPLETED = "https://w3id.org/xapi/openedx/extension/attempt-completed"
    GRADE_CLASSIFICATION = "http://www.tincanapi.co.uk/activitytypes/grade_classification"


def _plain(model: Any) -> dict[str, Any]:
    """A tincan object as the plain dict its JSON serialisation denotes."""
    return json.loads(model.to_json(XAPI_VERSION))


@cache
def verb(key: str) -> dict[str, Any]:
    """The verb fragment."""
    return _plain(Verb(id=VERBS[key], display=LanguageMap({"en": key})))


@lru_cache(maxsize=65_536)
def actor(home_page: str, name: str) -> dict[str, Any]:
    """The actor fragment: an account on the LMS named by the anonymised id."""
    return _plain(Agent(account=AgentAccount(home_page=home_page, name=name)))


@lru_cache(maxsize=65_536)
def activity(
    activity_id: str,
    kind: str,
    *,
    name: str | None = None,
    name_lang: str = "en",
    description: str | None = None,
    interaction_type: str | None = None,
) -> dict[str, Any]:
    """An activity with its definition, validated by tincan (the id must be an IRI, as xAPI requires)."""
    if ":" not in activity_id:
        raise TranslationError(f"activity id is not an IRI: {activity_id[:80]!r}")
    if kind == "interaction" and interaction_type is None:
        raise ValueError("a cmi.interaction activity must have an interactionType (xAPI 1.0.3 Data 2.4.4.1)")
    definition = ActivityDefinition(type=ACTIVITY_TYPES[kind])
    if name is not None:
        definition.name = LanguageMap({name_lang: name})
    if description is not None:
        definition.description = LanguageMap({"en-US": description})
    if interaction_type is not None:
        definition.interaction_type = interaction_type
    return _plain(Activity(id=activity_id, object_type="Activity", definition=definition))


def with_definition_extensions(base: dict[str, Any], extensions: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cached activity whose definition also carries per-event extensions."""
    return {**base, "definition": {**base["definition"], "extensions": extensions}}


@lru_cache(maxsize=4096)
def duration(seconds: float) -> str:
    """xAPI result duration as tincan spells it (`PT03M15S`)."""
    return jsonify_timedelta(timedelta(seconds=seconds))
