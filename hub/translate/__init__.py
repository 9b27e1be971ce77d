"""Translators: a normalised LMS event to xAPI statements or Caliper 1.2 events, purely.

The hub calls `translate` once per (translator, consumer type) and fans the result out. Anything
wrong with the event surfaces as `TranslationError` (dead-lettered with its reason) and an event
the translator does not map as `NoTranslation` (counted, not delivered); nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hub.events import Event, user_id
from hub.translate import caliper, xapi
from hub.translate.base import NoTranslation, Source, TranslationError, TranslationSettings

__all__ = ["TRANSLATORS", "NoTranslation", "TranslationError", "TranslationSettings", "supports", "translate"]

TRANSLATORS: tuple[str, ...] = ("xapi", "caliper")

_BUILDERS: dict[str, Mapping[str, Callable[[Source], list[dict[str, Any]]]]] = {
    "xapi": xapi.BUILDERS,
    "caliper": caliper.BUILDERS,
}


def supports(translator: str, event_name: str) -> bool:
    """Whether `translator` has a mapping for events named `event_name`."""
    return event_name in _builders(translator)


def translate(event: Event, translator: str, *, actor_id: str, settings: TranslationSettings) -> list[dict]:
    """The JSON-ready output of `translator` for `event`, as the learner `actor_id` (anonymised)."""
    builders = _BUILDERS.get(translator) or _builders(translator)
    name = event.get("name") if isinstance(event, (dict, Mapping)) else None
    build = builders.get(name) if isinstance(name, str) else None
    if build is None:
        raise NoTranslation(f"{translator} has no mapping for {str(name)[:80]!r}")
    try:
        if not _names_a_user(event):
            raise TranslationError(f"{name}: the event names no user (`user_id` or `username`)")
        return build(Source(event, actor_id, settings))
    except TranslationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
        raise TranslationError(f"{name}: malformed event ({type(exc).__name__}: {exc})") from exc


def _builders(translator: str) -> Mapping[str, Callable[[Source], list[dict[str, Any]]]]:
    try:
        return _BUILDERS[translator]
    except KeyError:
        raise ValueError(f"unknown translator {translator!r}; expected one of {TRANSLATORS}") from None


def _names_a_user(event: Event) -> bool:
    """An event about nobody is never sent; the LMS names users by id, or by username alone."""
    context = event.get("context")
    found = context.get("user_id") if isinstance(context, dict) else None
    if (found not in (None, "") and not isinstance(found, bool)) or user_id(event) is not None:
        return True
    data = event.get("data")
    return any(
        isinstance(source, Mapping) and bool(source.get("username"))
        for source in (event.get("context"), data)
    )
