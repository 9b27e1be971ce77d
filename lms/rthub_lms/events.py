"""The one internal event shape, and the normaliser that produces it from what the LMS emits.

The LMS emits two shapes: event-tracking's (`name`, `timestamp`, `data`, `context`) and the
tracking log's (`event_type`, `time`, `event`, `context`, plus request fields such as `username`
or `ip` at the top level). Everything downstream (grants, anonymisation, translators) reads only
the normalised shape, so it never has to know which one arrived.

`loads` and `encode` are how every entrance (the plug-in, the event bus ingest, `rthub publish`)
reads JSON text into an event and writes an event as JSON: nesting too deep for either answers
`TooDeep`, a `MalformedEvent`, never a `RecursionError` or an untyped encoder error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import orjson

MAX_EVENT_BYTES = 64 * 1024
# orjson writes at most this many nested containers (its recursion limit), the event object included.
MAX_DEPTH = 254

# Request fields the tracking log keeps at the top level; the normalised event keeps them in context.
_TOP_LEVEL_CONTEXT_FIELDS = (
    "username",
    "ip",
    "agent",
    "host",
    "referer",
    "session",
    "page",
    "event_source",
    "accept_language",
)


class Event(TypedDict):
    """A normalised LMS event: plain JSON-ready data."""

    name: str
    timestamp: str
    data: Any
    context: dict[str, Any]


class MalformedEvent(ValueError):
    """The input is not an LMS event rthub can carry; the message says why."""


class TooDeep(MalformedEvent):
    """JSON nested deeper than rthub reads or writes: a `bad-json` event, not a crash."""


def loads(text: str | bytes) -> Any:
    """JSON text of an event or one of its fields; `ValueError` when not JSON, `TooDeep` when nested beyond
    what Python's parser takes (about a thousand levels: it raises `RecursionError`)."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise TooDeep("JSON nested too deep to parse") from exc


def encode(event: Event) -> bytes:
    """The JSON an event is stored as; `TooDeep` beyond `MAX_DEPTH` levels, `MalformedEvent` for values
    orjson cannot write (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(event, default=str)
    except TypeError as exc:
        if _deeper_than(event, MAX_DEPTH):
            raise TooDeep(f"nested more than {MAX_DEPTH} levels deep") from exc
        raise MalformedEvent(f"not serialisable: {exc}") from exc


def normalise(raw: Mapping[str, Any]) -> Event:
    """Turn either LMS shape into an `Event`, or raise `MalformedEvent` with the reason."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent(f"event must be a JSON object, got {type(raw).__name__}")
    name = raw.get("name") or raw.get("event_type")
    if not isinstance(name, str) or not name:
        raise MalformedEvent("missing event name (`name` or `event_type`)")
    timestamp = _timestamp(raw.get("timestamp", raw.get("time")))
    context = raw.get("context") or {}
    if not isinstance(context, Mapping):
        raise MalformedEvent("`context` must be an object")
    context = dict(context)
    for key in _TOP_LEVEL_CONTEXT_FIELDS:
        if key in raw and key not in context:
            context[key] = raw[key]
    data = raw["data"] if "data" in raw else raw.get("event", {})
    return Event(name=name, timestamp=timestamp, data=_parse_embedded_json(data), context=context)


def check_normalised(value: Any) -> Event:
    """Accept only what `normalise` produces (as read back from Redis), or raise `MalformedEvent`."""
    if not isinstance(value, dict):
        raise MalformedEvent(f"event must be a JSON object, got {type(value).__name__}")
    missing = [key for key in ("name", "timestamp", "data", "context") if key not in value]
    if missing:
        raise MalformedEvent(f"missing field(s): {', '.join(missing)}")
    if not isinstance(value["name"], str) or not value["name"]:
        raise MalformedEvent("`name` must be a non-empty string")
    _timestamp(value["timestamp"])
    if not isinstance(value["context"], dict):
        raise MalformedEvent("`context` must be an object")
    return Event(name=value["name"], timestamp=value["timestamp"], data=value["data"], context=value["context"])


def from_browser(event: Event) -> bool:
    """True for events the learner's browser sent (`event_source: browser`, set by the LMS's tracking
    endpoint, never by the page): their `data` is whatever the browser chose to write."""
    return event["context"].get("event_source") == "browser"


def server_data(event: Event) -> Mapping[str, Any]:
    """`data` as a source of identity: the payload of server events; nothing for browser events."""
    data = event["data"]
    return data if isinstance(data, Mapping) and not from_browser(event) else {}


def user_id(event: Event) -> str | None:
    """The LMS user id the event is about, as a string, or None when it names no user.

    `context.user_id` (set by the LMS from the session), else `data.user_id` for server events only.
    """
    for source in (event["context"], server_data(event)):
        value = source.get("user_id")
        if value not in (None, "") and not isinstance(value, bool):
            return str(value)
    return None


def course_id(event: Event) -> str | None:
    """The course the event is about: `context.course_id`, else `data.course_id` for server events only."""
    for source in (event["context"], server_data(event)):
        value = source.get("course_id")
        if isinstance(value, str) and value:
            return value
    return None


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise MalformedEvent("timestamp has no time zone")
        return value.isoformat()
    if not isinstance(value, str) or not value:
        raise MalformedEvent("missing timestamp (`timestamp` or `time`)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedEvent(f"timestamp is not ISO 8601: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise MalformedEvent("timestamp has no time zone")
    return value


def _parse_embedded_json(data: Any) -> Any:
    """Browser events carry their payload as a JSON string; unwrap it when it is one (`TooDeep` propagates)."""
    if isinstance(data, str) and data[:1] in ("{", "["):
        try:
            return loads(data)
        except TooDeep:
            raise
        except ValueError:
            return data
    return data


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep; iterative, so any depth is measured without recursion.
    Only run after orjson refused an event, never on the way of one it took."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level for child in _children(item) if isinstance(child, Mapping | list | tuple)]
        if not level:
            return False
    return True


def _children(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.values()
    return value if isinstance(value, list | tuple) else ()
