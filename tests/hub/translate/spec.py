"""Caliper 1.2 rules written out independently of hub.translate, to check its output against."""

from __future__ import annotations

import re
from typing import Any

CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
ACTIONS = {
    "Event": None,  # the generic Event may carry any action of the vocabulary
    "AssessmentEvent": {"Started", "Paused", "Resumed", "Restarted", "Reset", "Submitted"},
    "AssessmentItemEvent": {"Started", "Skipped", "Completed"},
    "ForumEvent": {"Subscribed", "Unsubscribed"},
    "GradeEvent": {"Graded"},
    "MediaEvent": {
        "ChangedResolution", "ChangedSize", "ChangedSpeed", "ChangedVolume", "ClosedPopout",
        "DisabledClosedCaptioning", "EnabledClosedCaptioning", "Ended", "EnteredFullScreen",
        "ExitedFullScreen", "ForwardedTo", "JumpedTo", "Muted", "OpenedPopout", "Paused", "Resumed",
        "Restarted", "Started", "Unmuted",
    },
    "MessageEvent": {"Posted", "MarkedAsRead", "MarkedAsUnread"},
    "NavigationEvent": {"NavigatedTo"},
    "ResourceManagementEvent": {
        "Archived", "Copied", "Created", "Deleted", "Described", "Downloaded", "Modified", "Printed",
        "Published", "Restored", "Retrieved", "Saved", "Unpublished", "Uploaded",
    },
    "ThreadEvent": {"MarkedAsRead", "MarkedAsUnread"},
    "ViewEvent": {"Viewed"},
}  # fmt: skip
VOCABULARY = set().union(*(actions for actions in ACTIONS.values() if actions)) | {"Activated", "Deactivated"}
OBJECTS = {
    "AssessmentEvent": {"Assessment"},
    "AssessmentItemEvent": {"AssessmentItem"},
    "ForumEvent": {"Forum"},
    "GradeEvent": {"Attempt"},
    "MediaEvent": {"AudioObject", "ImageObject", "MediaObject", "VideoObject"},
    "MessageEvent": {"Message"},
    "ThreadEvent": {"Thread"},
}
GENERATED = {
    "AssessmentEvent": {"Attempt"},
    "AssessmentItemEvent": {"Attempt", "Response"},
    "GradeEvent": {"Score"},
}
ENTITIES = {
    "Annotation", "Assessment", "AssessmentItem", "Attempt", "CourseOffering", "DigitalResource",
    "DigitalResourceCollection", "Forum", "Frame", "MediaLocation", "Message", "Person",
    "Score", "Thread", "VideoObject", "WebPage",
}  # fmt: skip
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
DURATION = re.compile(r"P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?\Z")


def problems(event: dict[str, Any]) -> list[str]:
    """Every rule `event` breaks (empty when it is a valid Caliper 1.2 event)."""
    found = []
    for key in ("@context", "id", "type", "actor", "action", "object", "eventTime"):
        if key not in event:
            found.append(f"missing {key}")
    if found:
        return found
    if event["@context"] != CONTEXT:
        found.append("wrong @context")
    if not event["id"].startswith("urn:uuid:"):
        found.append("id is not a urn:uuid")
    kind = event["type"]
    if kind not in ACTIONS:
        return [*found, f"unknown event type {kind}"]
    allowed = ACTIONS[kind] or VOCABULARY
    if event["action"] not in allowed:
        found.append(f"{kind} does not allow {event['action']}")
    if kind in OBJECTS and event["object"].get("type") not in OBJECTS[kind]:
        found.append(f"{kind} object cannot be {event['object'].get('type')}")
    if "generated" in event and event["generated"].get("type") not in GENERATED.get(kind, set()):
        found.append(f"{kind} cannot generate {event['generated'].get('type')}")
    if not TIME.match(event["eventTime"]):
        found.append("eventTime is not UTC with milliseconds")
    if event["actor"].get("type") != "Person":
        found.append("actor is not a Person")
    for role in ("actor", "object", "target", "generated"):
        if role in event:
            found.extend(_entity_problems(event[role], role))
    return found


def _entity_problems(entity: Any, where: str) -> list[str]:
    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str) or "type" not in entity:
        return [f"{where} is not an entity with id and type"]
    found = []
    if entity["type"] not in ENTITIES:
        found.append(f"{where} has unknown type {entity['type']}")
    if not (entity["id"].startswith("_:") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", entity["id"])):
        found.append(f"{where} id is not an IRI")
    for key in ("duration", "currentTime"):
        if key in entity and not DURATION.match(entity[key]):
            found.append(f"{where}.{key} is not an ISO 8601 duration")
    for key in ("startedAtTime", "endedAtTime"):
        if key in entity and not TIME.match(entity[key]):
            found.append(f"{where}.{key} is not UTC with milliseconds")
    for key in ("isPartOf", "assignee", "assignable", "attempt"):
        if key in entity:
            found.extend(_entity_problems(entity[key], f"{where}.{key}"))
    return found
