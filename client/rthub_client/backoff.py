"""Exponential backoff with full jitter, so a fleet of consumers does not reconnect in step."""

from __future__ import annotations

import random


class Backoff:
    """Delays drawn uniformly from [0, min(cap, base * 2**attempt)]; `reset` after a success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
