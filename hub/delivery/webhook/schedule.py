"""When to try again: the configured schedule with jitter, or what the receiver asked for."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2


def retry_delay(
    schedule: tuple[float, ...],
    failed_attempts: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait after `failed_attempts` failures, or None when the schedule is exhausted.

    The schedule step is spread by +/-20 % so that clients failing together do not retry together.
    A receiver's `Retry-After` replaces the step, capped at the schedule's longest step.
    """
    if failed_attempts > len(schedule):
        return None
    step = schedule[failed_attempts - 1]
    if retry_after is not None:
        return min(max(retry_after, 0.0), max(schedule))
    return step * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
