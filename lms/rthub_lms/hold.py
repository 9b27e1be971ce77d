"""The preemptive filter's hold: events the filter's snapshot did not want, kept in memory until its background
thread has checked, with one GET of the interest version, that no change made them wanted since
(rthub_lms/filter.py). Bounded in count and bytes, so a stalled check costs memory only up to the caps;
adding never blocks and never does I/O, so it can run inside the LMS request.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class HoldBuffer(Generic[T]):
    """A FIFO of items with their sizes, refusing items past `max_items` or `max_bytes`; thread-safe."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """At the cap: the next item would be refused (or the caps were passed by `restore`)."""
        return len(self._items) >= self.max_items or self._bytes >= self.max_bytes

    def add(self, item: T, size: int) -> bool:
        """Append `item` (of `size` bytes); False, leaving the buffer as it was, when it does not fit."""
        with self._lock:
            if len(self._items) >= self.max_items or self._bytes + size > self.max_bytes:
                return False
            self._items.append((item, size))
            self._bytes += size
            return True

    def take(self) -> list[tuple[T, int]]:
        """Everything held, oldest first, with its size; the buffer is left empty."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            return items

    def restore(self, items: list[tuple[T, int]]) -> None:
        """Put back what `take` returned, ahead of anything added since, so arrival order is kept. The caps
        are not applied: these items were accepted once (`full` then says so)."""
        with self._lock:
            self._items.extendleft(reversed(items))
            self._bytes += sum(size for _, size in items)
