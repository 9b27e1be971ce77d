"""Grants: what a client may see, validated on input and compiled once into fast matchers.

A grant is a list of rules; an event is visible when any rule matches it, so an empty grant sees
nothing (deny by default). A rule is a conjunction of optional constraints, one per event fact:
`courses`, `orgs`, `sites`, `users`, `event_types`; a rule with no constraint (`{}`) matches all
events. A constraint lists accepted values and holds when the event's fact equals one of them or
matches one of its patterns; a constraint on a fact the event does not carry never holds.
docs/permissions.md states the rules precisely, with examples.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.events import Event, user_id

RULE_KEYS = ("courses", "orgs", "sites", "users", "event_types")

# Rule key -> the EventFacts attribute it constrains.
_FACT_OF = {"courses": "course", "orgs": "org", "sites": "site", "users": "user", "event_types": "event_type"}

# Index preference: the first exact-only constraint in this order decides a rule's bucket.
_INDEX_ORDER = ("course", "user", "event_type", "org", "site")

_GLOB_CHARS = frozenset("*?[")


class GrantError(ValueError):
    """A grant or filter is malformed; `field` names the offending part, e.g. `grant[1].courses[0]`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_grant(value: object, field: str = "grant") -> list[dict[str, list[str]]]:
    """Check a grant (a list of rules) and return it normalised; `[]` is valid and denies everything."""
    if not isinstance(value, list | tuple):
        raise GrantError(field, "must be a list of rules (objects)")
    return [_validate_rule(item, f"{field}[{index}]") for index, item in enumerate(value)]


def validate_filter(value: object, field: str = "filter") -> list[dict[str, list[str]]]:
    """Check a `subscribe` frame's filter: one rule object or a list of them.

    `None`, `{}` and `[]` all mean "no narrowing" and return `[]`, which `narrow` treats the same way.
    """
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [_validate_rule(value, field)] if value else []
    return validate_grant(value, field)


def _validate_rule(value: object, field: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise GrantError(field, "a rule must be an object")
    unknown = sorted(str(key) for key in value if key not in RULE_KEYS)
    if unknown:
        raise GrantError(f"{field}.{unknown[0]}", f"unknown constraint; allowed: {', '.join(RULE_KEYS)}")
    return {key: _validate_values(key, value[key], f"{field}.{key}") for key in RULE_KEYS if key in value}


def _validate_values(key: str, values: object, field: str) -> list[str]:
    if not isinstance(values, list | tuple) or not values:
        raise GrantError(field, "must be a non-empty list of strings")
    normalised: list[str] = []
    for index, item in enumerate(values):
        where = f"{field}[{index}]"
        if key == "users" and isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            raise GrantError(where, "must be a non-empty string")
        if item != item.strip():
            raise GrantError(where, "must not start or end with whitespace")
        if key == "users" and _is_glob(item):
            raise GrantError(where, "user ids are matched exactly; patterns are not allowed")
        if key == "sites":
            item = item.lower()
        if item not in normalised:
            normalised.append(item)
    return normalised


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What grants look at, read once per event; None when the event does not carry the fact."""

    course: str | None
    org: str | None
    site: str | None
    user: str | None
    event_type: str


def event_facts(event: Event) -> EventFacts:
    """Read the facts grants constrain.

    course: `context.course_id`, else `data.course_id`. org: `context.org_id`, else parsed from the
    course key. site: `context.host`, lower-cased. user: `hub.events.user_id`. event_type: `name`.
    """
    context = event.get("context") or {}
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    course = _text(context.get("course_id")) or _text(data.get("course_id"))
    org = _text(context.get("org_id")) or (org_from_key(course) if course else None)
    site = _text(context.get("host"))
    return EventFacts(
        course=course,
        org=org,
        site=site.lower() if site else None,
        user=user_id(event),
        event_type=event["name"],
    )


def org_from_key(key: str) -> str | None:
    """The org of an opaque key: `course-v1:ORG+C+R`, `block-v1:ORG+...`, `i4x://ORG/...`, `ORG/C/R`."""
    if key.startswith("i4x://"):
        org = key[len("i4x://") :].split("/", 1)[0]
        return org or None
    namespace, colon, body = key.partition(":")
    if colon:
        if not namespace.endswith("-v1"):
            return None
        org, plus, _ = body.partition("+")
        return org if plus and org else None
    parts = key.split("/")
    return parts[0] if len(parts) == 3 and all(parts) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_glob(value: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(value)


class _Clause:
    """One constraint: the fact holds an accepted exact value, starts with a prefix, or fits a glob."""

    __slots__ = ("exact", "fact", "prefixes", "regex")

    def __init__(self, key: str, values: list[str]) -> None:
        self.fact = _FACT_OF[key]
        globs = [value for value in values if _is_glob(value)]
        prefixes = [v for v in values if key == "event_types" and v.endswith(".") and not _is_glob(v)]
        self.exact = frozenset(values) - set(globs) - set(prefixes)
        self.prefixes = tuple(prefixes)
        self.regex = re.compile("|".join(fnmatch.translate(glob) for glob in globs)) if globs else None

    @property
    def exact_only(self) -> bool:
        return not self.prefixes and self.regex is None

    def holds(self, value: str | None) -> bool:
        if value is None:
            return False
        if value in self.exact:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        return self.regex is not None and self.regex.match(value) is not None


class _Rule:
    """A conjunction of clauses; `slot` is the (fact, exact values) it is indexed under, if any."""

    __slots__ = ("clauses", "slot")

    def __init__(self, clauses: tuple[_Clause, ...]) -> None:
        self.clauses = clauses
        candidates = [clause for clause in clauses if clause.exact_only]
        if candidates:
            best = min(candidates, key=lambda c: (_INDEX_ORDER.index(c.fact), len(c.exact)))
            self.slot: tuple[str, frozenset[str]] | None = (best.fact, best.exact)
        else:
            self.slot = None

    def matches(self, facts: EventFacts) -> bool:
        # Explicit loops on the per-event path: cheaper than a generator in all()/any().
        for clause in self.clauses:  # noqa: SIM110
            if not clause.holds(getattr(facts, clause.fact)):
                return False
        return True


class Matcher:
    """A compiled grant: true when any of its rules matches."""

    __slots__ = ("rules",)

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        self.rules = rules

    def matches(self, facts: EventFacts) -> bool:
        for rule in self.rules:  # noqa: SIM110
            if rule.matches(facts):
                return True
        return False


def compile_grant(rules: list[dict[str, list[str]]]) -> Matcher:
    """Compile validated rules (from `validate_grant`) once, so matching never re-parses patterns."""
    return Matcher(
        tuple(_Rule(tuple(_Clause(key, values) for key, values in rule.items())) for rule in rules)
    )


def narrow(grant: Matcher, filter_rules: list[dict[str, list[str]]] | None) -> Matcher:
    """The grant restricted by a subscription filter: visible iff the grant and the filter both match.

    Each grant rule is joined with each filter rule, so the result can only see less than the grant.
    """
    if not filter_rules:
        return grant
    narrowing = compile_grant(filter_rules)
    return Matcher(
        tuple(_Rule(mine.clauses + theirs.clauses) for mine in grant.rules for theirs in narrowing.rules)
    )


class GrantIndex:
    """Many keyed matchers, looked up per event without visiting every key.

    Each rule sits in one bucket keyed by the exact values of its most selective exact-only
    constraint (course, then user, event type, org, site); rules with only patterns or no
    constraint go to a scan list. A lookup verifies the candidates of the event's buckets and the
    scan list against their full rule, so the answer equals checking every matcher.
    """

    def __init__(self) -> None:
        self._matchers: dict[Hashable, Matcher] = {}
        self._buckets: dict[str, dict[str, dict[Hashable, list[_Rule]]]] = {f: {} for f in _INDEX_ORDER}
        self._scan: dict[Hashable, list[_Rule]] = {}

    def __len__(self) -> int:
        return len(self._matchers)

    def set(self, key: Hashable, matcher: Matcher) -> None:
        """Add or replace the matcher under `key`."""
        self.remove(key)
        self._matchers[key] = matcher
        for rule in matcher.rules:
            if rule.slot is None:
                self._scan.setdefault(key, []).append(rule)
                continue
            fact, values = rule.slot
            table = self._buckets[fact]
            for value in values:
                table.setdefault(value, {}).setdefault(key, []).append(rule)

    def remove(self, key: Hashable) -> None:
        """Forget `key`; unknown keys are ignored."""
        matcher = self._matchers.pop(key, None)
        if matcher is None:
            return
        self._scan.pop(key, None)
        for rule in matcher.rules:
            if rule.slot is None:
                continue
            fact, values = rule.slot
            table = self._buckets[fact]
            for value in values:
                bucket = table.get(value)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del table[value]

    def matching(self, facts: EventFacts) -> set[Hashable]:
        """Exactly the keys whose matcher matches these facts."""
        found: set[Hashable] = set()
        for key, rules in self._candidates(facts):
            if key not in found and _any_matches(rules, facts):
                found.add(key)
        return found

    def matches_any(self, facts: EventFacts) -> bool:
        """True iff some key's matcher matches; stops at the first match."""
        return any(_any_matches(rules, facts) for _, rules in self._candidates(facts))

    def _candidates(self, facts: EventFacts) -> Iterator[tuple[Hashable, list[_Rule]]]:
        for fact, table in self._buckets.items():
            if not table:
                continue
            value = getattr(facts, fact)
            if value is not None:
                bucket = table.get(value)
                if bucket:
                    yield from bucket.items()
        yield from self._scan.items()


def _any_matches(rules: list[_Rule], facts: EventFacts) -> bool:
    for rule in rules:  # noqa: SIM110
        if rule.matches(facts):
            return True
    return False
