"""Client change notices: when a client is revoked or its rights change, its live sockets go within a second.

The registry publishes a client id on `{prefix}{registry}:changes` after every create, update, rotation or
revocation. Every hub instance listens, looks the client up again, and closes (4403) each socket
whose identity no longer matches: the client reconnects and is judged afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.identity import CLOSE_FORBIDDEN, ClientIdentity
from hub.config import Settings
from hub.fanout.dispatch import Fanout
from rthub_lms.keys import changes_channel

log = logging.getLogger("rthub.changes")

Lookup = Callable[[str], Awaitable[ClientIdentity | None]]

RETRY_DELAY = 0.5


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
        conn.close(CLOSE_FORBIDDEN, reason)
    if stale:
        log.info("%s: closed %d socket(s)", reason, len(stale), extra={"client_id": client_id})
    return len(stale)


async def watch_changes(client: aioredis.Redis, settings: Settings, fanout: Fanout, lookup: Lookup) -> None:
    """Follow the change channel until cancelled, resubscribing after Redis errors.

    After a resubscribe every connected client is re-evaluated, since notices sent while the
    channel was down are lost.
    """
    channel = changes_channel(settings)
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            fanout.changes_seen += 1  # notices may have been lost: handshakes in flight check again
            for client_id in {conn.identity.client_id for conn in fanout.connections.values()}:
                await reevaluate(fanout, client_id, lookup)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    await reevaluate(fanout, message["data"].decode(), lookup)
        except (RedisError, OSError) as exc:
            log.warning("change notices lost (%s); resubscribing", exc)
            await asyncio.sleep(RETRY_DELAY)
        finally:
            await pubsub.aclose()
