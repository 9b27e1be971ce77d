"""Shared pieces of the SDK tests: an LMS that keeps publishing, a consumer task, and waiting."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from types import TracebackType

import redis.asyncio as aioredis
from rthub_client import Event, Stream

from auth.registry import ClientRegistry
from hub.dev.simulator import SimulatedLMS
from rthub_lms import RealtimeBackend
from tests.hubproc import Hub
from tests.waiting import async_wait_until


class Load:
    """A simulated LMS publishing through `RealtimeBackend` from a thread, whatever happens to the hub."""

    def __init__(self, redis_url: str, prefix: str, seed: int, interval: float = 0.005) -> None:
        # A generous Redis timeout: on a busy machine the default 50 ms would spool events, and their
        # cursors (which the tests compare with what the SDK yields) would only be known later.
        self.backend = RealtimeBackend(redis_url=redis_url, redis_prefix=prefix, preemptive=False, timeout=5.0)
        self.lms = SimulatedLMS(seed=seed)
        self.interval = interval
        self.published: list[str | None] = []
        self.names: list[str] = []  # of the events `send` published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def send(self, count: int) -> list[str | None]:
        """Publish `count` events now (from the caller's thread); their cursors (names in `names`)."""
        cursors = []
        for _ in range(count):
            event = self.lms.next_event()
            self.names.append(event.get("name") or event.get("event_type"))
            cursors.append(self.backend.send(event))
        self.published += cursors
        return cursors

    def _run(self) -> None:
        while not self._stop.is_set():
            self.published.append(self.backend.send(self.lms.next_event()))
            time.sleep(self.interval)  # pacing

    def start(self) -> None:
        """Keep publishing from a thread until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self.backend.close()


class Consumer:
    """Iterates a `Stream` in a task, recording what it yields and what ended it."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.events: list[Event] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.stream:
            self.events.append(event)

    @property
    def cursors(self) -> list[str]:
        return [event.cursor for event in self.events]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.aclose()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for `predicate` to hold, failing the test after `timeout` seconds."""
    await async_wait_until(predicate, timeout, f"{what} not reached")


def revoke_client(hub: Hub, client_id: str) -> None:
    """Revoke through the registry, as `rthub clients revoke` does (from any thread)."""

    async def revoke() -> None:
        redis = aioredis.Redis.from_url(hub.redis_url)
        try:
            await ClientRegistry(redis, hub.settings).revoke(client_id)
        finally:
            await redis.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, revoke()).result()
