"""What one consumer may ask of a hub process: sockets per client, and the size and rate of `subscribe` filters.

A filter is compiled into a matcher that runs for every event, so its size is one client's cost
landing on everyone's event loop: thousands of leading-wildcard patterns took ~85 ms to compile and
made matching ~800 times slower. The size bounds keep the worst filter about as cheap to match as an
ordinary one and are checked on the raw frame before anything else reads it; `FilterBudget` then
bounds how much compiling one client causes per second, however many sockets it spreads it over:
past its budget its frames wait (its own reader stalls, nobody else's), and a frame that would
wait more than `FILTER_MAX_WAIT` closes the socket with 1008.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

# Rules in one filter; constraint values across all of them; and of those, patterns (globs and
# event-type prefixes), which cannot be looked up in a table and are tried one by one.
MAX_FILTER_RULES = 16
MAX_FILTER_VALUES = 256
MAX_FILTER_PATTERNS = 16
MAX_VALUE_LENGTH = 256
# Filter rules plus values compiled per second per client on one process, and the burst allowed:
# four of the largest filters at once, then about two a second.
FILTER_COST_PER_SECOND = 512.0
FILTER_COST_BURST = 4 * (MAX_FILTER_RULES + MAX_FILTER_VALUES)
FILTER_MAX_WAIT = 1.0

_GLOB_CHARS = frozenset("*?[")


class FilterTooLarge(ValueError):
    """A filter over one of the limits; the message names the limit and its value."""


class FilterTooFrequent(ValueError):
    """A client changes filters faster than its budget, even allowing for a short wait."""


def filter_cost(raw: object) -> int:
    """Rules plus values of a raw (unvalidated) filter, refusing one over the size limits before
    validation reads it all (validating the 64 KiB frame took ~30 ms on the loop)."""
    rules = [raw] if isinstance(raw, Mapping) else raw if isinstance(raw, list) else []
    if len(rules) > MAX_FILTER_RULES:
        raise FilterTooLarge(f"{len(rules)} rules (limit {MAX_FILTER_RULES} rules per filter)")
    values = 0
    for rule in rules:
        if isinstance(rule, Mapping):
            values += sum(len(accepted) if isinstance(accepted, list) else 1 for accepted in rule.values())
    if values > MAX_FILTER_VALUES:
        raise FilterTooLarge(f"{values} values (limit {MAX_FILTER_VALUES} values per filter)")
    return len(rules) + values


def check_filter(rules: Iterable[dict[str, list[str]]]) -> None:
    """Raise `FilterTooLarge` when validated filter rules have too many patterns or too long a value."""
    patterns = 0
    for rule in rules:
        for key, accepted in rule.items():
            for value in accepted:
                if len(value) > MAX_VALUE_LENGTH:
                    raise FilterTooLarge(f"a value of {len(value)} characters (limit {MAX_VALUE_LENGTH})")
                if not _GLOB_CHARS.isdisjoint(value) or (key == "event_types" and value.endswith(".")):
                    patterns += 1
    if patterns > MAX_FILTER_PATTERNS:
        raise FilterTooLarge(f"{patterns} patterns (limit {MAX_FILTER_PATTERNS} wildcard patterns per filter)")


class FilterBudget:
    """A token bucket per client id, shared by all its sockets on this process."""

    def __init__(self, rate: float = FILTER_COST_PER_SECOND, burst: float = FILTER_COST_BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def charge(self, client_id: str, cost: float, max_wait: float = FILTER_MAX_WAIT) -> float:
        """Take `cost` from the client's bucket; returns how long to wait before compiling (0: now).
        Raises `FilterTooFrequent`, taking nothing, when that wait would exceed `max_wait`."""
        now = time.monotonic()
        allowance, last = self._buckets.get(client_id, (self.burst, now))
        allowance = min(self.burst, allowance + (now - last) * self.rate) - cost
        wait = max(0.0, -allowance / self.rate)
        if wait > max_wait:
            self._buckets[client_id] = (allowance + cost, now)
            raise FilterTooFrequent(
                f"filter changes too frequent for this client (limit {self.rate:.0f} rules and values per second)"
            )
        self._buckets[client_id] = (allowance, now)
        return wait

    def forget(self, client_id: str) -> None:
        """The client has no socket left here."""
        self._buckets.pop(client_id, None)
