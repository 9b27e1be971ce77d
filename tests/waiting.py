"""Waiting for a condition instead of sleeping for a guess: returns as soon as it holds, fails the test
with `message` when it has not held within `timeout` (kept generous: a green run never waits it out)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

POLL = 0.02


def wait_until(predicate: Callable[[], Any], timeout: float = 20, message: str = "condition not met") -> float:
    """Poll `predicate` until it is truthy; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{message} (waited {timeout} s)")
        time.sleep(POLL)
    return time.monotonic() - start


async def async_wait_until(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 20, message: str = "condition not met"
) -> float:
    """`wait_until` for the event loop; `predicate` may be a coroutine function."""
    start = time.monotonic()
    while True:
        outcome = predicate()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{message} (waited {timeout} s)")
        await asyncio.sleep(POLL)
