"""Client change notices: the one follower of the registry's change channel, and what the fan-out does on one.

The registry publishes a client id on `{prefix}{registry}:changes` after every create, update, rotation or
revocation. Each process runs one `ChangeFollower`; whatever keeps a view of the registry registers
callbacks on it: the fan-out (`follow_sockets`: a client's live sockets are looked up again and those
whose identity no longer matches are closed with 4403, so the client reconnects and is judged afresh,
within a second), webhook routing and the render stage. Pub/sub loses the notices sent while the
channel is down, so after every (re)subscribe each registration's `resync` runs; a registration may
also ask for a resync every so often, as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.closecodes import CloseCode
from auth.identity import ClientIdentity
from hub.config import Settings
from hub.fanout.dispatch import Fanout
from hub.redis import Backoff
from rthub_lms.keys import changes_channel

log = logging.getLogger("rthub.changes")

Lookup = Callable[[str], Awaitable[ClientIdentity | None]]
OnChange = Callable[[str], Awaitable[object]]
OnResync = Callable[[], Awaitable[object]]

# How long one read of the channel waits: the loop checks `close` at least this often, since redis-py
# can swallow a cancellation that lands inside `get_message(timeout=...)`.
POLL = 1.0


@dataclass
class _Registration:
    on_change: OnChange | None
    resync: OnResync
    every: float | None
    due: float = float("inf")


class ChangeFollower:
    """Follows the change channel until `close`, calling every registration in the order registered."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._channel = changes_channel(settings)
        self._registrations: list[_Registration] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.failures = 0  # callbacks that raised (`rthub_registry_change_failures`)

    def register(self, on_change: OnChange | None, resync: OnResync, *, resync_every: float | None = None) -> None:
        """`on_change(client_id)` per notice (None: notices do not concern it); `resync()` after every
        (re)subscribe, and every `resync_every` seconds when given. Register before `start`."""
        self._registrations.append(_Registration(on_change, resync, resync_every))

    def start(self) -> asyncio.Task[None]:
        """Follow in a task of its own (it ends only on `close`)."""
        self._task = asyncio.create_task(self._run(), name="rthub-changes")
        return self._task

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = Backoff()  # the one retry policy for Redis outages (`hub.redis`)
        while not self._stopping:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                loop = asyncio.get_running_loop()
                for registration in self._registrations:
                    await self._resync(registration, loop.time())
                backoff.reset()
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        client_id = data.decode() if isinstance(data, bytes) else str(data)
                        for registration in self._registrations:
                            if registration.on_change is not None:
                                await self._notify(registration, registration.on_change, client_id, loop.time())
                    now = loop.time()
                    for registration in self._registrations:
                        if now >= registration.due:
                            await self._resync(registration, now)
            except (RedisError, OSError) as exc:
                delay = backoff.next_delay()
                log.warning("change notices lost (%s); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                await pubsub.aclose()

    async def _notify(self, registration: _Registration, on_change: OnChange, client_id: str, now: float) -> None:
        """One notice to one registration. A failure other than Redis's (which resubscribes) is logged
        and counted, and that registration resyncs on the next turn instead of keeping a stale view;
        the others, and later notices, are not held up by it."""
        try:
            await on_change(client_id)
        except (RedisError, OSError):
            raise
        except Exception:
            self.failures += 1
            registration.due = now
            log.exception("applying the change of %s failed; reloading everything", client_id)

    async def _resync(self, registration: _Registration, now: float) -> None:
        """A registration reads the registry afresh; a failure other than Redis's is logged, counted and
        tried again after `POLL`."""
        registration.due = now + registration.every if registration.every is not None else float("inf")
        try:
            await registration.resync()
        except (RedisError, OSError):
            raise
        except Exception:
            self.failures += 1
            registration.due = now + POLL
            log.exception("reloading after registry changes failed; trying again")


async def reevaluate(fanout: Fanout, client_id: str, lookup: Lookup) -> int:
    """Close every socket of `client_id` whose identity is no longer current; returns how many."""
    fanout.changes_seen += 1
    current = await lookup(client_id)
    stale = [
        conn for conn in fanout.connections.values()
        if conn.identity.client_id == client_id and conn.identity != current
    ]
    reason = "client revoked" if current is None else "client rights changed; reconnect"
    for conn in stale:
        conn.close(CloseCode.FORBIDDEN, reason)
    if stale:
        log.info("%s: closed %d socket(s)", reason, len(stale), extra={"client_id": client_id})
    return len(stale)


def follow_sockets(follower: ChangeFollower, fanout: Fanout, lookup: Lookup) -> None:
    """Re-evaluate a client's live sockets on each notice, and every connected client after a resubscribe."""

    async def on_change(client_id: str) -> None:
        await reevaluate(fanout, client_id, lookup)

    async def resync() -> None:
        fanout.changes_seen += 1  # notices may have been lost: handshakes in flight check again
        for client_id in {conn.identity.client_id for conn in fanout.connections.values()}:
            await reevaluate(fanout, client_id, lookup)

    follower.register(on_change, resync)
