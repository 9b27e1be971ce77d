"""One run of the same work at a time: callers asking for a key already being worked on wait for it.

The render cache (a frame waiting for the anonymiser's first Redis read of a learner) and the shared
history (a stream page many catch-ups ask for at once) both need this. The first caller does the
work; the others get its result or its exception. A waiter whose worker was cancelled (its socket
closed) is not cancelled with it: it does the work itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def running(self, key: K) -> bool:
        """Whether a caller is working on `key` now (a new caller would wait for it)."""
        return key in self._running

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The result of `work()` for `key`, and whether it came from another caller's run."""
        while (pending := self._running.get(key)) is not None:
            try:
                return await asyncio.shield(pending), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await work()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: the waiters re-raise it
            raise
        finally:
            del self._running[key]
        future.set_result(value)
        return value, False
