"""Waiting for a condition instead of sleeping for a guess: returns as soon as it holds, fails the test
with `message` when it has not held within `timeout` (kept generous: a green run never waits it out)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

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


def until_serving(process: subprocess.Popen[Any], url: str, what: str, timeout: float = 20) -> None:
    """Wait until `url` answers 200, failing at once with the exit status when `process` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer {url} within {timeout} s")
