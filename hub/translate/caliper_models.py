"""Small typed models for the Caliper 1.2 events rthub sends, with the specification's rules.

`caliper-python` is not on the package registry, so these models carry what rthub needs: required
fields, the actions each event type allows, the entity types its object (and generated entity) may
have, and the envelope. Entities that repeat (course offerings, videos, problems) are validated once
and cached as dicts by the caller; events are validated every time they are built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

CALIPER_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"

DIGITAL_RESOURCES = frozenset(
    {
        "DigitalResource",
        "DigitalResourceCollection",
        "Assessment",
        "AssessmentItem",
        "AudioObject",
        "Chapter",
        "Document",
        "Forum",
        "Frame",
        "ImageObject",
        "MediaObject",
        "Message",
        "Page",
        "Thread",
        "VideoObject",
        "WebPage",
    }
)
ENTITY_TYPES = DIGITAL_RESOURCES | {
    "Annotation",
    "Attempt",
    "CourseOffering",
    "CourseSection",
    "MediaLocation",
    "Person",
    "Score",
    "Session",
    "SoftwareApplication",
}

# Event type -> (allowed actions, allowed object types or None for any entity, allowed generated types).
EVENT_RULES: dict[str, tuple[frozenset[str], frozenset[str] | None, frozenset[str]]] = {
    "Event": (
        frozenset(
            {
                "Activated",
                "Completed",
                "Deactivated",
                "Modified",
                "Started",
                "Submitted",
                "Viewed",
                "NavigatedTo",
            }
        ),
        None,
        frozenset(),
    ),
    "AssessmentEvent": (
        frozenset({"Started", "Paused", "Resumed", "Restarted", "Reset", "Submitted"}),
        frozenset({"Assessment"}),
        frozenset({"Attempt"}),
    ),
    "AssessmentItemEvent": (
        frozenset({"Started", "Skipped", "Completed"}),
        frozenset({"AssessmentItem"}),
        frozenset({"Attempt", "Response"}),
    ),
    "ForumEvent": (frozenset({"Subscribed", "Unsubscribed"}), frozenset({"Forum"}), frozenset()),
    "GradeEvent": (frozenset({"Graded"}), frozenset({"Attempt"}), frozenset({"Score"})),
    "MediaEvent": (
        frozenset(
            {
                "ChangedResolution",
                "ChangedSize",
                "ChangedSpeed",
                "ChangedVolume",
                "ClosedPopout",
                "DisabledClosedCaptioning",
                "EnabledClosedCaptioning",
                "Ended",
                "EnteredFullScreen",
                "ExitedFullScreen",
                "ForwardedTo",
                "JumpedTo",
                "Muted",
                "OpenedPopout",
                "Paused",
                "Restarted",
                "Resumed",
                "Started",
                "Unmuted",
            }
        ),
        frozenset({"AudioObject", "ImageObject", "MediaObject", "VideoObject"}),
        frozenset(),
    ),
    "MessageEvent": (
        frozenset({"Posted", "MarkedAsRead", "MarkedAsUnread"}),
        frozenset({"Message"}),
        frozenset(),
    ),
    "NavigationEvent": (frozenset({"NavigatedTo"}), DIGITAL_RESOURCES, frozenset()),
    "ResourceManagementEvent": (
        frozenset(
            {"Archived", "Copied", "Created", "Deleted", "Modified", "Published", "Restored", "Retrieved"}
        ),
        DIGITAL_RESOURCES,
        frozenset(),
    ),
    "ThreadEvent": (frozenset({"MarkedAsRead", "MarkedAsUnread"}), frozenset({"Thread"}), frozenset()),
    "ViewEvent": (frozenset({"Viewed"}), DIGITAL_RESOURCES, frozenset()),
}

_AGENTS = frozenset({"Person", "SoftwareApplication"})
_EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")


class CaliperValidationError(ValueError):
    """A Caliper event or entity breaks a rule of the specification; the message says which."""


@lru_cache(maxsize=65_536)
def _is_id(value: str) -> bool:
    return value.startswith("_:") or _IRI.match(value) is not None


def _check_id(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _is_id(value):
        raise CaliperValidationError(
            f"{where}: `id` must be an IRI or a blank node id, got {str(value)[:60]!r}"
        )


@lru_cache(maxsize=1024)
def _shape_problem(
    event_type: str, action: str, actor_type: Any, object_type: Any, generated_type: Any
) -> str | None:
    """What is wrong with this combination of event type, action and entity types, if anything."""
    rules = EVENT_RULES.get(event_type)
    if rules is None:
        return f"unknown Caliper event type {event_type!r}"
    actions, object_types, generated_types = rules
    if action not in actions:
        return f"{event_type} does not allow action {action!r}"
    if actor_type not in _AGENTS:
        return f"{event_type}: `actor` must be an Agent (Person or SoftwareApplication)"
    if object_type not in ENTITY_TYPES or (object_types is not None and object_type not in object_types):
        return f"{event_type}: `object` cannot be a {object_type}"
    if generated_type is not None and generated_type not in generated_types:
        return f"{event_type}: `generated` cannot be a {generated_type}"
    return None


@dataclass(frozen=True, slots=True)
class Entity:
    """A Caliper entity: `id` and `type` are required; `properties` holds the type's own fields."""

    id: str
    type: str
    name: str | None = None
    extensions: Mapping[str, Any] | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id, self.type)
        if self.type not in ENTITY_TYPES:
            raise CaliperValidationError(f"unknown Caliper entity type {self.type!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out.update(self.properties)
        if self.extensions:
            out["extensions"] = dict(self.extensions)
        return out


@dataclass(slots=True)
class CaliperEvent:
    """A Caliper 1.2 event, without its id (`caliper.event` derives it from the content).

    `validate` applies the specification's rules for its type.
    """

    type: str
    action: str
    actor: dict[str, Any]
    object: dict[str, Any]
    event_time: str
    extensions: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    generated: Mapping[str, Any] | None = None

    def validate(self) -> CaliperEvent:
        actor, obj, generated = self.actor, self.object, self.generated
        if not isinstance(actor, dict) or not isinstance(obj, dict):
            raise CaliperValidationError(f"{self.type}: `actor` and `object` are required entities")
        problem = _shape_problem(
            self.type,
            self.action,
            actor.get("type"),
            obj.get("type"),
            None if generated is None else generated.get("type"),
        )
        if problem is not None:
            raise CaliperValidationError(problem)
        if not _EVENT_TIME.match(self.event_time):
            raise CaliperValidationError(f"{self.type}: `eventTime` must be ISO 8601 UTC with milliseconds")
        _check_id(actor.get("id"), f"{self.type}.actor")
        _check_id(obj.get("id"), f"{self.type}.object")
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "@context": CALIPER_CONTEXT,
            "type": self.type,
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "eventTime": self.event_time,
        }
        if self.target is not None:
            out["target"] = self.target
        if self.generated is not None:
            out["generated"] = self.generated
        if self.extensions:
            out["extensions"] = self.extensions
        return out


def envelope(events: list[dict[str, Any]], sensor: str, send_time: str) -> dict[str, Any]:
    """The Caliper 1.2 envelope that carries `events` from `sensor`, stamped `send_time`."""
    if not isinstance(sensor, str) or not _IRI.match(sensor):
        raise CaliperValidationError(f"envelope: `sensor` must be an IRI, got {str(sensor)[:60]!r}")
    if not isinstance(send_time, str) or not _EVENT_TIME.match(send_time):
        raise CaliperValidationError("envelope: `sendTime` must be ISO 8601 UTC with milliseconds")
    if not isinstance(events, list) or not all(isinstance(item, dict) and "type" in item for item in events):
        raise CaliperValidationError("envelope: `data` must be a list of Caliper events")
    return {"sensor": sensor, "sendTime": send_time, "dataVersion": CALIPER_CONTEXT, "data": events}
