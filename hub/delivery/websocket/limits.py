"""What one consumer may ask of a hub process: sockets per client, and the size of a `subscribe` filter.

A filter is compiled into a matcher that runs for every event, so its size is one client's cost
landing on everyone's event loop: thousands of leading-wildcard patterns took ~85 ms to compile and
made matching ~800 times slower. These bounds keep the worst filter about as cheap as an ordinary
one, which is also what makes compiling it on the loop acceptable (well under a millisecond).
"""

from __future__ import annotations

from collections.abc import Iterable

# Rules in one filter; constraint values across all of them; and of those, patterns (globs and
# event-type prefixes), which cannot be looked up in a table and are tried one by one.
MAX_FILTER_RULES = 16
MAX_FILTER_VALUES = 256
MAX_FILTER_PATTERNS = 16
MAX_VALUE_LENGTH = 256

_GLOB_CHARS = frozenset("*?[")


class FilterTooLarge(ValueError):
    """A filter over one of the limits; the message names the limit and its value."""


def check_filter(rules: Iterable[dict[str, list[str]]]) -> None:
    """Raise `FilterTooLarge` when validated filter rules exceed a limit."""
    rules = list(rules)
    if len(rules) > MAX_FILTER_RULES:
        raise FilterTooLarge(f"{len(rules)} rules (limit {MAX_FILTER_RULES} rules per filter)")
    values = patterns = 0
    for rule in rules:
        for key, accepted in rule.items():
            values += len(accepted)
            for value in accepted:
                if len(value) > MAX_VALUE_LENGTH:
                    raise FilterTooLarge(f"a value of {len(value)} characters (limit {MAX_VALUE_LENGTH})")
                if not _GLOB_CHARS.isdisjoint(value) or (key == "event_types" and value.endswith(".")):
                    patterns += 1
    if values > MAX_FILTER_VALUES:
        raise FilterTooLarge(f"{values} values (limit {MAX_FILTER_VALUES} values per filter)")
    if patterns > MAX_FILTER_PATTERNS:
        raise FilterTooLarge(f"{patterns} patterns (limit {MAX_FILTER_PATTERNS} wildcard patterns per filter)")
