"""What every translator shares: its settings, its two failure modes, and the per-event view it reads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rthub_lms.events import Event, course_id


@dataclass(frozen=True, slots=True)
class TranslationSettings:
    """Deployment facts a translation needs: where the LMS lives and what to call the transformer."""

    lms_root_url: str
    transformer_version: str


class NoTranslation(Exception):
    """The translator has no mapping for this event (it is not delivered and is counted, not an error)."""


class TranslationError(ValueError):
    """The event lacks or garbles a field this translator needs; the message names the field."""


class Source:
    """Read-only view of one event for a translator: required-field access that fails with the field name."""

    __slots__ = ("actor_id", "context", "data", "event", "name", "root", "timestamp", "version")

    def __init__(self, event: Event, actor_id: str, settings: TranslationSettings) -> None:
        if not isinstance(actor_id, str) or not actor_id:
            raise TranslationError("actor_id must be a non-empty string")
        context = event.get("context")
        if not isinstance(context, (dict, Mapping)):
            raise TranslationError("`context` must be an object")
        self.event = event
        self.name: str = event["name"]
        self.timestamp: str = event["timestamp"]
        self.context: Mapping[str, Any] = context
        raw = event.get("data")
        self.data: Mapping[str, Any] = raw if isinstance(raw, (dict, Mapping)) else {}
        self.actor_id = actor_id
        self.root = settings.lms_root_url.rstrip("/")
        self.version = settings.transformer_version

    def need(self, key: str) -> Any:
        """`data[key]`, which must be present and not null."""
        value = self.data.get(key)
        if value is None or value == "":
            raise TranslationError(f"{self.name}: missing required field `data.{key}`")
        return value

    def need_str(self, key: str) -> str:
        value = self.need(key)
        if not isinstance(value, str):
            raise TranslationError(f"{self.name}: `data.{key}` must be a string")
        return value

    def need_number(self, key: str) -> float:
        return number(self.need(key), f"{self.name}: `data.{key}`")

    def optional_number(self, *keys: str) -> float | None:
        """The first of `keys` present in data, as a number; None when all are absent or null."""
        for key in keys:
            value = self.data.get(key)
            if value is not None and value != "":
                return number(value, f"{self.name}: `data.{key}`")
        return None

    def context_course_id(self) -> str | None:
        """`context.course_id` when the event carries one (the course the statement sits in)."""
        value = self.context.get("course_id")
        return value if isinstance(value, str) and value else None

    def course_id(self) -> str:
        """The course key as grants see it (`rthub_lms.events.course_id`: never from a browser's data)."""
        value = course_id(self.event)
        if value is None:
            raise TranslationError(f"{self.name}: missing required field `context.course_id`")
        return value


def number(value: Any, where: str) -> float:
    """A finite JSON number or numeric string as a number; booleans, NaN and infinities are malformed."""
    if isinstance(value, bool):
        raise TranslationError(f"{where} must be a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float | str):
        try:
            parsed = float(value)
        except ValueError:
            parsed = math.nan
        if math.isfinite(parsed):
            return value if isinstance(value, float) else parsed
    raise TranslationError(f"{where} must be a number, got {str(value)[:40]!r}")
