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
import functools
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from rthub_lms.events import Event, course_id, user_id

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

    course and user: `rthub_lms.events.course_id` and `user_id` (from `context`, and from `data` only
    for server events: a browser writes its own). org: `context.org_id`, else parsed from the course
    key. site: `context.host`, lower-cased. event_type: `name`.
    """
    context = event.get("context") or {}
    course = course_id(event)
    org = _text(context.get("org_id")) or (org_from_key(course) if course else None)
    site = _text(context.get("host"))
    return EventFacts(
        course=course,
        org=org,
        site=site.lower() if site else None,
        user=user_id(event),
        event_type=event["name"],
    )


@functools.lru_cache(maxsize=4096)  # parsed once per course key, not once per event
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
    """One constraint: the fact holds an accepted exact value, starts with a prefix, or fits a glob.

    `leads` are the literal beginnings of its prefixes and globs (`course-v1:MITx+` for
    `course-v1:MITx+*`): every non-exact match starts with one of them. None when some glob starts
    with a wildcard, so no such lead exists.
    """

    __slots__ = ("exact", "fact", "leads", "prefixes", "regex")

    def __init__(self, key: str, values: list[str]) -> None:
        self.fact = _FACT_OF[key]
        globs = [value for value in values if _is_glob(value)]
        prefixes = [v for v in values if key == "event_types" and v.endswith(".") and not _is_glob(v)]
        self.exact = frozenset(values) - set(globs) - set(prefixes)
        self.prefixes = tuple(prefixes)
        self.regex = re.compile("|".join(fnmatch.translate(glob) for glob in globs)) if globs else None
        leads = [*prefixes, *(_literal_lead(glob) for glob in globs)]
        self.leads = frozenset(leads) if all(leads) else None

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


def event_type_matcher(value: str) -> Callable[[str], bool]:
    """Whether an event name fits one `event_types` value, exactly as a grant would match it."""
    return _Clause("event_types", [value]).holds


def _literal_lead(glob: str) -> str:
    """The part of a glob before its first wildcard."""
    for index, char in enumerate(glob):
        if char in _GLOB_CHARS:
            return glob[:index]
    return glob


class _Rule:
    """A conjunction of clauses.

    `key_clause` is the clause the index files the rule under (None: scanned): preferably one with
    exact values only, else one whose every pattern has a literal lead. `rest` is what is left to
    verify once an exact-value bucket has already proved `key_clause`.
    """

    __slots__ = ("clauses", "key_clause", "rest")

    def __init__(self, clauses: tuple[_Clause, ...]) -> None:
        self.clauses = clauses
        indexable = [clause for clause in clauses if clause.leads is not None]
        self.key_clause = (
            min(indexable, key=lambda c: (not c.exact_only, _INDEX_ORDER.index(c.fact), len(c.exact)))
            if indexable
            else None
        )
        self.rest = tuple(clause for clause in clauses if clause is not self.key_clause)

    def matches(self, facts: EventFacts) -> bool:
        return _all_hold(self.clauses, facts)


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


# key -> the clause tuples still to verify for it, one per rule filed in this bucket.
_Bucket = dict[Hashable, list[tuple[_Clause, ...]]]


class GrantIndex:
    """Many keyed matchers, looked up per event without visiting every key.

    Each rule is filed under one constraint, preferring one with exact values only, in the order
    course, user, event type, org, site: once per exact value in an exact table, and once per
    literal lead of its patterns in a lead table (looked up by the fact's beginnings of the lengths
    present). Rules with no such constraint (no constraint at all, or a pattern starting with a
    wildcard) go to a scan list. A lookup collects the event's buckets and the scan list and checks
    each candidate's remaining constraints, so the answer equals checking every matcher.
    """

    def __init__(self) -> None:
        self._matchers: dict[Hashable, Matcher] = {}
        # fact -> exact value or literal lead -> bucket.
        self._exact: dict[str, dict[str, _Bucket]] = {fact: {} for fact in _INDEX_ORDER}
        self._leads: dict[str, dict[str, _Bucket]] = {fact: {} for fact in _INDEX_ORDER}
        # fact -> lead length -> how many leads of that length are filed.
        self._lengths: dict[str, Counter[int]] = {fact: Counter() for fact in _INDEX_ORDER}
        self._scan: _Bucket = {}

    def __len__(self) -> int:
        return len(self._matchers)

    def set(self, key: Hashable, matcher: Matcher) -> None:
        """Add or replace the matcher under `key`."""
        self.remove(key)
        self._matchers[key] = matcher
        for rule in matcher.rules:
            clause = rule.key_clause
            if clause is None:
                self._scan.setdefault(key, []).append(rule.clauses)
                continue
            for value in clause.exact:
                self._exact[clause.fact].setdefault(value, {}).setdefault(key, []).append(rule.rest)
            for lead in clause.leads or ():
                bucket = self._leads[clause.fact].setdefault(lead, {})
                if not bucket:
                    self._lengths[clause.fact][len(lead)] += 1
                bucket.setdefault(key, []).append(rule.clauses)

    def remove(self, key: Hashable) -> None:
        """Forget `key`; unknown keys are ignored."""
        matcher = self._matchers.pop(key, None)
        if matcher is None:
            return
        self._scan.pop(key, None)
        for rule in matcher.rules:
            clause = rule.key_clause
            if clause is None:
                continue
            for value in clause.exact:
                _unfile(self._exact[clause.fact], value, key)
            for lead in clause.leads or ():
                if _unfile(self._leads[clause.fact], lead, key):
                    lengths = self._lengths[clause.fact]
                    lengths[len(lead)] -= 1
                    if not lengths[len(lead)]:
                        del lengths[len(lead)]

    def matching(self, facts: EventFacts) -> set[Hashable]:
        """Exactly the keys whose matcher matches these facts."""
        found: set[Hashable] = set()
        for group in self._candidates(facts):
            for key, alternatives in group.items():
                if key not in found and _any_holds(alternatives, facts):
                    found.add(key)
        return found

    def matches_any(self, facts: EventFacts) -> bool:
        """True iff some key's matcher matches; stops at the first match."""
        for group in self._candidates(facts):
            for alternatives in group.values():
                if _any_holds(alternatives, facts):
                    return True
        return False

    def _candidates(self, facts: EventFacts) -> list[_Bucket]:
        groups = []
        for fact in _INDEX_ORDER:
            value = getattr(facts, fact)
            if value is None:
                continue
            bucket = self._exact[fact].get(value)
            if bucket:
                groups.append(bucket)
            leads = self._leads[fact]
            for length in self._lengths[fact]:
                if length <= len(value):
                    bucket = leads.get(value[:length])
                    if bucket:
                        groups.append(bucket)
        groups.append(self._scan)
        return groups


def _unfile(table: dict[str, _Bucket], value: str, key: Hashable) -> bool:
    """Drop `key` from one bucket; True when that emptied (and so deleted) the bucket."""
    bucket = table.get(value)
    if bucket is None or bucket.pop(key, None) is None or bucket:
        return False
    del table[value]
    return True


# Explicit loops on the per-event path: cheaper than generators inside all()/any().
def _all_hold(clauses: tuple[_Clause, ...], facts: EventFacts) -> bool:
    for clause in clauses:  # noqa: SIM110
        if not clause.holds(getattr(facts, clause.fact)):
            return False
    return True


def _any_holds(alternatives: list[tuple[_Clause, ...]], facts: EventFacts) -> bool:
    for clauses in alternatives:  # noqa: SIM110
        if _all_hold(clauses, facts):
            return True
    return False
