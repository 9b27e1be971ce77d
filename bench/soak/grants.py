"""The checker's own reading of a grant (not the hub's matcher, which is what is under test).

A grant is a list of rules; an event is allowed when one rule matches all of its keys. The soak only
uses `courses`, `orgs` and `event_types`, with exact values or shell globs.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

Grant = list[dict[str, Any]] | None  # None: not entitled (not created yet, revoked, endpoint disabled)


def allows(grant: Grant, course: str, org: str, name: str) -> bool:
    if not grant:
        return False
    facts = {"courses": course, "orgs": org, "event_types": name}
    return any(all(any(fnmatchcase(facts[key], value) for value in values) for key, values in rule.items())
               for rule in grant)


def narrowed(grant: Grant, sdk_filter: list[dict[str, Any]] | None) -> Grant:
    """What a socket with `sdk_filter` may receive: the grant and the filter together."""
    if grant is None or sdk_filter is None:
        return grant
    return [{**rule, **narrow} for rule in grant for narrow in sdk_filter]
