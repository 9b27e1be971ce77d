"""The clauses of xAPI 1.0.3 and Caliper 1.2 that rthub's output touches, each a check of its own.

Written from the standards' text, independently of `hub.translate` (nothing here is imported from it),
and listed with their section in docs/translators.md ("Clauses checked"). `violations(output)` names
every clause an output breaks, as `(clause id, where)`; a clause id is the table's first column.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Violation = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Clause:
    id: str
    section: str
    text: str


# RFC 3987 absolute IRI: a scheme, a colon, and no whitespace or characters IRIs exclude.
IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+\Z")
# RFC 5646 language tag (the shapes the standards' examples and rthub use: language[-script][-region]).
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*\Z")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
ISO_DURATION = re.compile(
    r"P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?\Z"
)
CALIPER_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
INTERACTION_TYPE = "http://adlnet.gov/expapi/activities/cmi.interaction"
INTERACTION_TYPES = {
    "true-false", "choice", "fill-in", "long-fill-in", "matching", "performance", "sequencing", "likert",
    "numeric", "other",
}  # fmt: skip
CONTEXT_ACTIVITY_KEYS = {"parent", "grouping", "category", "other"}
STATEMENT_KEYS = {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority",
                  "version", "attachments"}
AGENT_KEYS = {"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"}
ACCOUNT_KEYS = {"homePage", "name"}
VERB_KEYS = {"id", "display"}
ACTIVITY_KEYS = {"objectType", "id", "definition"}
DEFINITION_KEYS = {"name", "description", "type", "moreInfo", "interactionType", "correctResponsesPattern", "choices",
                   "scale", "source", "target", "steps", "extensions"}
RESULT_KEYS = {"score", "success", "completion", "response", "duration", "extensions"}
SCORE_KEYS = {"scaled", "raw", "min", "max"}
CONTEXT_KEYS = {"registration", "instructor", "team", "contextActivities", "revision", "platform", "language",
                "statement", "extensions"}
STATEMENT_REF_KEYS = {"objectType", "id"}
CALIPER_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
ENVELOPE_KEYS = {"sensor", "sendTime", "dataVersion", "data"}
# A usage key spelt bare (`block-v1:...`, `i4x://...`) rather than as the block's IRI.
BARE_BLOCK = re.compile(r"((ccx-)?block-v1|i4x):")

XAPI: tuple[Clause, ...] = (
    Clause("x-required", "Data 2.2", "a Statement MUST use actor, verb and object"),
    Clause("x-statement-properties", "Data 2.2, 2.4",
           "a Statement and every object in it (actor, account, verb, activity, definition, result, score, "
           "context, StatementRef) have only the properties the standard defines (extensions aside)"),
    Clause("x-id-uuid", "Data 2.4.1", "the Statement id MUST be a UUID (RFC 4122 variant 2) in standard string form"),
    Clause("x-version", "Data 2.4.10", "a Learning Record Provider that sets version MUST set it to 1.0.0"),
    Clause("x-actor-ifi", "Data 2.4.2.1, 2.4.2.3",
           "an Agent MUST be identified by exactly one Inverse Functional Identifier"),
    Clause("x-account", "Data 2.4.2.4", "an account MUST have a homePage (an IRL) and a name (a string)"),
    Clause("x-verb-id", "Data 2.4.3", "a Verb id MUST be an IRI"),
    Clause("x-language-map", "Data 4.2", "a Language Map's keys MUST be RFC 5646 tags, its values strings"),
    Clause("x-activity-id", "Data 2.4.4.1", "an Activity MUST have an id, an IRI"),
    Clause("x-activity-type", "Data 2.4.4.1", "an Activity definition's type MUST be an IRI"),
    Clause("x-interaction-type", "Data 2.4.4.1",
           "an Interaction Activity (type cmi.interaction) MUST have a valid interactionType"),
    Clause("x-object-type", "Data 2.4.4", "objectType, when set, MUST be Activity, Agent, Group, "
                                          "SubStatement or StatementRef"),
    Clause("x-statement-ref", "Data 2.4.4.3", "a StatementRef MUST have objectType StatementRef and a UUID id"),
    Clause("x-extensions", "Data 2.4.4.1, 2.4.5, 2.4.6", "extension keys MUST be IRIs"),
    Clause("x-score-scaled", "Data 2.4.5.1", "score.scaled MUST be a decimal from -1 to 1"),
    Clause("x-score-raw", "Data 2.4.5.1", "score.raw MUST lie between min and max when they are present"),
    Clause("x-score-min-max", "Data 2.4.5.1", "score.min MUST be less than score.max"),
    Clause("x-result-types", "Data 2.4.5", "success and completion MUST be booleans, response a string"),
    Clause("x-duration", "Data 2.4.5, 4.6", "result.duration MUST be an ISO 8601 duration"),
    Clause("x-context-activities", "Data 2.4.6.2",
           "contextActivities keys MUST be parent, grouping, category or other, each an array of Activities"),
    Clause("x-context-properties", "Data 2.4.6",
           "revision and platform only when the Object is an Activity; language an RFC 5646 tag"),
    Clause("x-timestamp", "Data 2.4.7, 4.5", "timestamp MUST be an ISO 8601 date and time with a time zone"),
    Clause("x-timestamp-instant", "Data 2.4.7, 4.5",
           "timestamp is the LMS event's own instant: never a later one (a provider MUST NOT use a future "
           "time), its precision kept (MUST preserve milliseconds)"),
    Clause("x-no-null", "rthub", "no property is null: a value is sent or the property is left out"),
    Clause("x-one-iri-per-block", "Data 2.4.4.1",
           "the same block is one Activity: its id is `{root}/xblock/{usage key}` (plus a sub-path) everywhere"),
    Clause("x-no-blank-node", "rthub", "no value anywhere is a blank-node identifier (`_:`)"),
)

CALIPER: tuple[Clause, ...] = (
    Clause("c-envelope", "1.2 Sensor API: Envelope",
           "the Envelope has exactly sensor (an IRI), sendTime (UTC, milliseconds, Z), dataVersion (the 1.2 "
           "context IRI) and data (an array of events)"),
    Clause("c-context", "1.2 §4 (JSON-LD)", "@context MUST be http://purl.imsglobal.org/ctx/caliper/v1p2"),
    Clause("c-id-urn-uuid", "1.2 §4.1", "an Event id MUST be a UUID URN (urn:uuid:, RFC 4122)"),
    Clause("c-required", "1.2 §4.1", "an Event MUST have @context, id, type, actor, action, object, eventTime"),
    Clause("c-event-time", "1.2 §4.1", "eventTime MUST be ISO 8601 UTC with millisecond precision"),
    Clause("c-event-time-instant", "1.2 §4.1",
           "eventTime is the LMS event's own instant (to the millisecond), never a later one"),
    Clause("c-event-type", "1.2 §4.2", "type MUST be a Caliper 1.2 event type and action one it supports"),
    Clause("c-actor", "1.2 §4.2", "the actor of these events MUST be a Person"),
    Clause("c-object-type", "1.2 §4.2", "object, target and generated MUST be entity types the event type allows"),
    Clause("c-entity", "1.2 §5", "an Entity MUST have an id, an IRI, and a type defined by 1.2"),
    Clause("c-no-blank-node", "1.2 §5 (JSON-LD)", "no entity is a blank node (rthub's stricter rule): no `_:` "
                                                   "value anywhere, no entity (an object with a type) without id"),
    Clause("c-one-iri-per-block", "1.2 Identifiers", "an Entity IRI MUST be unique and persistent: a block is "
                                            "`{root}/xblock/{usage key}` (plus a sub-path) in every event"),
    Clause("c-terms", "1.2 JSON-LD context", "every property outside `extensions` is a term the 1.2 context "
                                            "defines for that entity or event type"),
    Clause("c-assignable", "1.2 §5 Attempt", "Attempt.assignable MUST be a DigitalResource (or a subtype)"),
    Clause("c-assignee", "1.2 §5 Attempt", "Attempt.assignee MUST be a Person"),
    Clause("c-count", "1.2 §5 Attempt", "Attempt.count MUST be a non-negative integer"),
    Clause("c-score", "1.2 §5 Score", "scoreGiven and maxScore MUST be numbers (rthub: always with a fraction)"),
    Clause("c-duration", "1.2 §5", "duration and currentTime MUST be ISO 8601 durations"),
    Clause("c-times", "1.2 §5", "startedAtTime, endedAtTime, dateCreated, dateModified MUST be ISO 8601 UTC "
                                "with milliseconds"),
    Clause("c-extensions", "1.2 §4.1, §5", "extensions MUST be a JSON object"),
)

DIGITAL_RESOURCES = {
    "DigitalResource", "DigitalResourceCollection", "Assessment", "AssessmentItem", "AudioObject", "Chapter",
    "Document", "Forum", "Frame", "ImageObject", "MediaObject", "Message", "Page", "Thread", "VideoObject", "WebPage",
}  # fmt: skip
ACTIONS = {
    "AssessmentEvent": {"Started", "Paused", "Resumed", "Restarted", "Reset", "Submitted"},
    "AssessmentItemEvent": {"Started", "Skipped", "Completed"},
    "ForumEvent": {"Subscribed", "Unsubscribed"},
    "GradeEvent": {"Graded"},
    "MediaEvent": {"ChangedResolution", "ChangedSize", "ChangedSpeed", "ChangedVolume", "ClosedPopout",
                   "DisabledClosedCaptioning", "EnabledClosedCaptioning", "Ended", "EnteredFullScreen",
                   "ExitedFullScreen", "ForwardedTo", "JumpedTo", "Muted", "OpenedPopout", "Paused", "Resumed",
                   "Restarted", "Started", "Unmuted"},
    "MessageEvent": {"Posted", "MarkedAsRead", "MarkedAsUnread"},
    "NavigationEvent": {"NavigatedTo"},
    "ResourceManagementEvent": {"Archived", "Copied", "Created", "Deleted", "Described", "Downloaded", "Modified",
                                "Printed", "Published", "Restored", "Retrieved", "Saved", "Unpublished", "Uploaded"},
    "ThreadEvent": {"MarkedAsRead", "MarkedAsUnread"},
    "ViewEvent": {"Viewed"},
}  # fmt: skip
# The generic Event may carry any action of the 1.2 vocabulary (§3).
ACTIONS["Event"] = set().union(*ACTIONS.values()) | {
    "Abandoned", "Accepted", "Activated", "Added", "Archived", "Attached", "Bookmarked", "Changed", "Classified",
    "Commented", "Completed", "Copied", "Created", "Deactivated", "Declined", "Deleted", "Described", "Disliked",
    "Downloaded", "Hid", "Highlighted", "Identified", "Launched", "Liked", "Linked", "LoggedIn", "LoggedOut",
    "Modified", "NavigatedTo", "OptedIn", "OptedOut", "Printed", "Published", "Questioned", "Ranked", "Recommended",
    "Removed", "Restored", "Retrieved", "Returned", "Reviewed", "Rewound", "Saved", "Searched", "Sent", "Shared",
    "Showed", "Submitted", "Subscribed", "Tagged", "TimedOut", "Unpublished", "Unsubscribed", "Uploaded", "Used",
    "Viewed",
}  # fmt: skip
OBJECTS = {
    "AssessmentEvent": {"Assessment"}, "AssessmentItemEvent": {"AssessmentItem"}, "ForumEvent": {"Forum"},
    "GradeEvent": {"Attempt"}, "MediaEvent": {"AudioObject", "ImageObject", "MediaObject", "VideoObject"},
    "MessageEvent": {"Message"}, "ThreadEvent": {"Thread"},
    "NavigationEvent": DIGITAL_RESOURCES | {"SoftwareApplication"}, "ResourceManagementEvent": DIGITAL_RESOURCES,
    "ViewEvent": DIGITAL_RESOURCES,
}  # fmt: skip
GENERATED = {"AssessmentEvent": {"Attempt"}, "AssessmentItemEvent": {"Attempt", "Response"}, "GradeEvent": {"Score"}}
TARGETS = {"MediaEvent": {"MediaLocation"}, "NavigationEvent": {"DigitalResource", "Frame", "WebPage"}}
EVENT_TERMS = {"@context", "id", "type", "profile", "actor", "action", "object", "eventTime", "edApp", "generated",
               "target", "referrer", "group", "membership", "session", "federatedSession", "extensions"}
ENTITY_TERMS = {"id", "type", "name", "description", "dateCreated", "dateModified", "extensions", "otherIdentifiers"}
RESOURCE_TERMS = ENTITY_TERMS | {"creators", "mediaType", "keywords", "learningObjectives", "isPartOf",
                                 "datePublished", "version", "storageName"}
TERMS: dict[str, set[str]] = {
    **{kind: RESOURCE_TERMS for kind in DIGITAL_RESOURCES},
    "Assessment": RESOURCE_TERMS | {"items", "dateToActivate", "dateToShow", "dateToStartOn", "dateToSubmit",
                                    "maxAttempts", "maxSubmits", "maxScore"},
    "AssessmentItem": RESOURCE_TERMS | {"isTimeDependent", "maxScore", "maxSubmits", "dateToActivate", "dateToShow",
                                        "dateToStartOn", "dateToSubmit", "maxAttempts"},
    "DigitalResourceCollection": RESOURCE_TERMS | {"items"},
    "VideoObject": RESOURCE_TERMS | {"duration"},
    "MediaObject": RESOURCE_TERMS | {"duration"},
    "Message": RESOURCE_TERMS | {"replyTo", "body", "attachments"},
    "Thread": RESOURCE_TERMS | {"items"},
    "Forum": RESOURCE_TERMS | {"items"},
    "Annotation": ENTITY_TERMS | {"annotator", "annotated"},
    "Attempt": ENTITY_TERMS | {"assignee", "assignable", "isPartOf", "count", "startedAtTime", "endedAtTime",
                               "duration"},
    "Score": ENTITY_TERMS | {"attempt", "maxScore", "scoreGiven", "scoredBy", "comment"},
    "Person": ENTITY_TERMS,
    "CourseOffering": ENTITY_TERMS | {"courseNumber", "academicSession", "subOrganizationOf", "members"},
    "MediaLocation": ENTITY_TERMS | {"currentTime"},
}  # fmt: skip


def xapi_violations(statement: dict[str, Any], root: str, event_time: str | None = None) -> Iterator[Violation]:
    """The clauses `statement` breaks; `event_time` is the LMS event's timestamp it was translated from."""
    yield from _no_nulls(statement, "statement", "x-no-null")
    yield from _blank_nodes(statement, "statement", "x-no-blank-node")
    missing = [key for key in ("actor", "verb", "object") if key not in statement]
    if missing:
        yield "x-required", ",".join(missing)
    yield from _properties(statement, STATEMENT_KEYS, "statement")
    if not (isinstance(statement.get("id"), str) and UUID_TEXT.match(statement["id"])):
        yield "x-id-uuid", "id"
    if "version" in statement and statement["version"] != "1.0.0":
        yield "x-version", "version"
    yield from _agent(statement.get("actor"), "actor")
    verb = statement.get("verb") or {}
    yield from _properties(verb, VERB_KEYS, "verb")
    if not _iri(verb.get("id")):
        yield "x-verb-id", "verb.id"
    if "display" in verb:
        yield from _language_map(verb["display"], "verb.display")
    obj = statement.get("object") or {}
    if obj.get("objectType") == "StatementRef":
        yield from _statement_ref(obj, "object")
    elif obj.get("objectType", "Activity") == "Activity":
        yield from _activity(obj, "object", root)
    else:
        yield "x-object-type", "object.objectType"
    if "result" in statement:
        yield from _result(statement["result"])
    if "context" in statement:
        yield from _context(statement["context"], root, obj.get("objectType", "Activity") == "Activity")
    yield from _timestamp(statement.get("timestamp"))
    if event_time is not None and "timestamp" in statement and not _same_instant(statement["timestamp"], event_time):
        yield "x-timestamp-instant", "timestamp"


def _agent(agent: Any, where: str) -> Iterator[Violation]:
    if not isinstance(agent, dict) or agent.get("objectType", "Agent") != "Agent":
        yield "x-actor-ifi", where
        return
    yield from _properties(agent, AGENT_KEYS, where)
    identifiers = [key for key in ("mbox", "mbox_sha1sum", "openid", "account") if key in agent]
    if len(identifiers) != 1:
        yield "x-actor-ifi", where
    account = agent.get("account")
    if account is not None and not (
        isinstance(account, dict) and re.match(r"https?://", str(account.get("homePage", "")))
        and isinstance(account.get("name"), str) and account["name"]
    ):
        yield "x-account", f"{where}.account"
    if isinstance(account, dict):
        yield from _properties(account, ACCOUNT_KEYS, f"{where}.account")


def _activity(activity: Any, where: str, root: str) -> Iterator[Violation]:
    if not isinstance(activity, dict) or not _iri(activity.get("id")):
        yield "x-activity-id", f"{where}.id"
        return
    if activity.get("objectType", "Activity") != "Activity":
        yield "x-object-type", f"{where}.objectType"
    yield from _properties(activity, ACTIVITY_KEYS, where)
    if not _block_iri(activity["id"], root):
        yield "x-one-iri-per-block", f"{where}.id"
    definition = activity.get("definition") or {}
    yield from _properties(definition, DEFINITION_KEYS, f"{where}.definition")
    if "type" in definition and not _iri(definition["type"]):
        yield "x-activity-type", f"{where}.definition.type"
    for key in ("name", "description"):
        if key in definition:
            yield from _language_map(definition[key], f"{where}.definition.{key}")
    if definition.get("type") == INTERACTION_TYPE and definition.get("interactionType") not in INTERACTION_TYPES:
        yield "x-interaction-type", f"{where}.definition.interactionType"
    if "interactionType" in definition and definition["interactionType"] not in INTERACTION_TYPES:
        yield "x-interaction-type", f"{where}.definition.interactionType"
    if "extensions" in definition:
        yield from _extensions(definition["extensions"], f"{where}.definition.extensions")


def _statement_ref(ref: Any, where: str) -> Iterator[Violation]:
    if not (isinstance(ref, dict) and ref.get("objectType") == "StatementRef"
            and isinstance(ref.get("id"), str) and UUID_TEXT.match(ref["id"])):
        yield "x-statement-ref", where
    if isinstance(ref, dict):
        yield from _properties(ref, STATEMENT_REF_KEYS, where)


def _result(result: dict[str, Any]) -> Iterator[Violation]:
    yield from _properties(result, RESULT_KEYS, "result")
    score = result.get("score")
    if isinstance(score, dict):
        yield from _properties(score, SCORE_KEYS, "result.score")
        scaled, raw, low, high = (score.get(key) for key in ("scaled", "raw", "min", "max"))
        if scaled is not None and not (_number(scaled) and -1 <= scaled <= 1):
            yield "x-score-scaled", "result.score.scaled"
        if low is not None and high is not None and not (_number(low) and _number(high) and low < high):
            yield "x-score-min-max", "result.score"
        if raw is not None and (
            not _number(raw) or (_number(low) and raw < low) or (_number(high) and raw > high)
        ):
            yield "x-score-raw", "result.score.raw"
    for key, kind in (("success", bool), ("completion", bool), ("response", str)):
        if key in result and not isinstance(result[key], kind):
            yield "x-result-types", f"result.{key}"
    if "duration" in result and not (isinstance(result["duration"], str) and ISO_DURATION.match(result["duration"])):
        yield "x-duration", "result.duration"
    if "extensions" in result:
        yield from _extensions(result["extensions"], "result.extensions")


def _context(context: dict[str, Any], root: str, about_activity: bool) -> Iterator[Violation]:
    yield from _properties(context, CONTEXT_KEYS, "context")
    for key in ("revision", "platform"):
        if key in context and not (about_activity and isinstance(context[key], str)):
            yield "x-context-properties", f"context.{key}"
    if "language" in context and not (isinstance(context["language"], str) and LANGUAGE_TAG.match(context["language"])):
        yield "x-context-properties", "context.language"
    activities = context.get("contextActivities", {})
    for key, items in activities.items():
        if key not in CONTEXT_ACTIVITY_KEYS or not isinstance(items, list) or not items:
            yield "x-context-activities", f"context.contextActivities.{key}"
            continue
        for index, item in enumerate(items):
            yield from _activity(item, f"context.contextActivities.{key}[{index}]", root)
    if "statement" in context:
        yield from _statement_ref(context["statement"], "context.statement")
    if "registration" in context and not UUID_TEXT.match(str(context["registration"])):
        yield "x-id-uuid", "context.registration"
    if "extensions" in context:
        yield from _extensions(context["extensions"], "context.extensions")


def _timestamp(value: Any) -> Iterator[Violation]:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                                                      value):
        yield "x-timestamp", "timestamp"
        return
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        yield "x-timestamp", "timestamp"


def _same_instant(stated: str, event_time: str) -> bool:
    """`stated` is `event_time` (an ISO 8601 time with an offset), to its full precision, in any zone."""
    try:
        return datetime.fromisoformat(stated.replace("Z", "+00:00")) == datetime.fromisoformat(event_time)
    except ValueError:
        return False


def _milliseconds(event_time: str) -> str:
    """`event_time` in UTC, truncated to milliseconds, with a `Z` (how Caliper states it)."""
    try:
        moment = datetime.fromisoformat(event_time).astimezone(UTC)
    except ValueError:
        return ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _properties(value: Any, allowed: set[str], where: str) -> Iterator[Violation]:
    if isinstance(value, dict):
        for key in value:
            if key not in allowed:
                yield "x-statement-properties", f"{where}.{key}"


def _block_iri(iri: str, root: str | None) -> bool:
    """False for a block named other than `{root}/xblock/{usage key}`: its bare usage key, or another root's
    xblock path. LMS page URLs that mention a block (jump_to, discussions) are other resources."""
    foreign = root is not None and "/xblock/" in iri and not iri.startswith(f"{root}/xblock/")
    return not (BARE_BLOCK.match(iri) or foreign)


def _blank_nodes(value: Any, where: str, clause: str) -> Iterator[Violation]:
    """Every `_:` string (a blank-node identifier), and for Caliper every entity (an object with a `type`)
    that has no `id`, anywhere in `value`."""
    if isinstance(value, str):
        if value.startswith("_:"):
            yield clause, where
    elif isinstance(value, dict):
        if clause.startswith("c-") and "type" in value and "id" not in value:
            yield clause, where
        for key, item in value.items():
            yield from _blank_nodes(item, f"{where}.{key}", clause)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _blank_nodes(item, f"{where}[{index}]", clause)


def _language_map(value: Any, where: str) -> Iterator[Violation]:
    if not isinstance(value, dict) or not value or not all(
        isinstance(tag, str) and LANGUAGE_TAG.match(tag) and isinstance(text, str) for tag, text in value.items()
    ):
        yield "x-language-map", where


def _extensions(value: Any, where: str) -> Iterator[Violation]:
    if not isinstance(value, dict) or not all(_iri(key) for key in value):
        yield "x-extensions", where


def envelope_violations(envelope: Any) -> Iterator[Violation]:
    """The clauses a Sensor API envelope breaks (its events are checked by `caliper_violations`)."""
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_KEYS:
        yield "c-envelope", "keys"
        return
    if not _iri(envelope["sensor"]):
        yield "c-envelope", "sensor"
    if not (isinstance(envelope["sendTime"], str) and CALIPER_TIME.match(envelope["sendTime"])):
        yield "c-envelope", "sendTime"
    if envelope["dataVersion"] != CALIPER_CONTEXT:
        yield "c-envelope", "dataVersion"
    data = envelope["data"]
    if not (isinstance(data, list) and data and all(isinstance(item, dict) and item.get("type") in ACTIONS
                                                    for item in data)):
        yield "c-envelope", "data"


def caliper_violations(event: dict[str, Any], root: str | None = None, event_time: str | None = None
                       ) -> Iterator[Violation]:
    """The clauses `event` breaks; `root` is the LMS root URL, `event_time` the LMS event's timestamp it was
    translated from (each check that needs one is skipped without it)."""
    missing = [key for key in ("@context", "id", "type", "actor", "action", "object", "eventTime") if key not in event]
    if missing:
        yield "c-required", ",".join(missing)
        return
    if event["@context"] != CALIPER_CONTEXT:
        yield "c-context", "@context"
    if not _urn_uuid(event["id"]):
        yield "c-id-urn-uuid", "id"
    if not (isinstance(event["eventTime"], str) and CALIPER_TIME.match(event["eventTime"])):
        yield "c-event-time", "eventTime"
    elif event_time is not None and event["eventTime"] != _milliseconds(event_time):
        yield "c-event-time-instant", "eventTime"
    for key, value in event.items():
        yield from _blank_nodes(value, f"event.{key}", "c-no-blank-node")
    kind = event["type"]
    if kind not in ACTIONS or event["action"] not in ACTIONS[kind]:
        yield "c-event-type", f"{kind}/{event['action']}"
    for key in event:
        if key not in EVENT_TERMS:
            yield "c-terms", key
    if not isinstance(event["actor"], dict) or event["actor"].get("type") != "Person":
        yield "c-actor", "actor"
    for role, allowed in (("object", OBJECTS.get(kind)), ("target", TARGETS.get(kind)),
                          ("generated", GENERATED.get(kind, set()))):
        if role in event and allowed is not None and (event[role] or {}).get("type") not in allowed:
            yield "c-object-type", role
    if "extensions" in event and not isinstance(event["extensions"], dict):
        yield "c-extensions", "extensions"
    yield from _no_nulls(event, "event", "c-terms")
    for role in ("actor", "object", "target", "generated", "edApp", "group", "membership", "session"):
        if role in event:
            yield from _entity(event[role], role, root)


def _entity(entity: Any, where: str, root: str | None) -> Iterator[Violation]:
    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str) or "type" not in entity:
        yield "c-entity", where
        return
    if entity["id"].startswith("_:"):
        yield "c-no-blank-node", f"{where}.id"
    elif not _iri(entity["id"]):
        yield "c-entity", f"{where}.id"
    elif not _block_iri(entity["id"], root):
        yield "c-one-iri-per-block", f"{where}.id"
    terms = TERMS.get(entity["type"])
    if terms is None:
        yield "c-entity", f"{where}.type"
        return
    for key in entity:
        if key not in terms:
            yield "c-terms", f"{where}.{key}"
    if "extensions" in entity and not isinstance(entity["extensions"], dict):
        yield "c-extensions", f"{where}.extensions"
    if entity["type"] == "Attempt":
        yield from _attempt(entity, where)
    if entity["type"] == "Score":
        for key in ("scoreGiven", "maxScore"):
            if key in entity and not (isinstance(entity[key], float)):
                yield "c-score", f"{where}.{key}"
    for key in ("duration", "currentTime"):
        if key in entity and not (isinstance(entity[key], str) and ISO_DURATION.match(entity[key])):
            yield "c-duration", f"{where}.{key}"
    for key in ("startedAtTime", "endedAtTime", "dateCreated", "dateModified"):
        if key in entity and not (isinstance(entity[key], str) and CALIPER_TIME.match(entity[key])):
            yield "c-times", f"{where}.{key}"
    for key in ("isPartOf", "assignee", "assignable", "attempt", "annotator", "annotated", "replyTo"):
        if isinstance(entity.get(key), dict):
            yield from _entity(entity[key], f"{where}.{key}", root)
    for key, value in (entity.get("extensions") or {}).items():
        if isinstance(value, dict) and "type" in value and "id" in value:  # an entity the reference keeps there
            yield from _entity(value, f"{where}.extensions.{key}", root)


def _attempt(attempt: dict[str, Any], where: str) -> Iterator[Violation]:
    for source in (attempt, attempt.get("extensions") or {}):
        assignable, assignee = source.get("assignable"), source.get("assignee")
        if assignable is not None and (assignable or {}).get("type") not in DIGITAL_RESOURCES:
            yield "c-assignable", f"{where}.assignable"
        if assignee is not None and (assignee or {}).get("type") != "Person":
            yield "c-assignee", f"{where}.assignee"
    count = attempt.get("count")
    if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
        yield "c-count", f"{where}.count"


def _no_nulls(value: Any, where: str, clause: str) -> Iterator[Violation]:
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                yield clause, f"{where}.{key}"
            else:
                yield from _no_nulls(item, f"{where}.{key}", clause)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _no_nulls(item, f"{where}[{index}]", clause)


def _iri(value: Any) -> bool:
    return isinstance(value, str) and IRI.match(value) is not None


def _urn_uuid(value: Any) -> bool:
    if not (isinstance(value, str) and value.startswith("urn:uuid:")):
        return False
    try:
        return str(uuid.UUID(value[9:])) == value[9:]
    except ValueError:
        return False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


CHECKS: dict[str, Callable[..., Iterator[Violation]]] = {"xapi": xapi_violations, "caliper": caliper_violations}
