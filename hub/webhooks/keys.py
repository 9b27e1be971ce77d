"""The Redis keys of webhook delivery, all under the configured prefix (docs/webhooks.md lists them)."""

from __future__ import annotations

from hub.config import Settings


def outbox(settings: Settings, client_id: str) -> str:
    """Stream of live events queued for one client; entry id = event cursor, field `b` = body."""
    return settings.key(f"outbox:{client_id}")


def replay(settings: Settings, client_id: str) -> str:
    """Stream of events re-queued out of band (dead-letter replay, socket handoff); fields `c`, `b`."""
    return settings.key(f"replay:{client_id}")


def lease(settings: Settings, client_id: str) -> str:
    """Which hub instance delivers for one client right now (`SET NX PX`, renewed)."""
    return settings.key(f"wh:lease:{client_id}")


def state(settings: Settings, client_id: str) -> str:
    """Hash: the batch in flight (source, first, last), its attempts and next attempt time."""
    return settings.key(f"wh:state:{client_id}")


def health(settings: Settings, client_id: str) -> str:
    """Hash: last delivery / failure times, last error, delivered, failed attempts, dead letters."""
    return settings.key(f"wh:health:{client_id}")


def presence(settings: Settings, client_id: str) -> str:
    """Sorted set: hub instance -> expiry (ms) of its live sockets for one client."""
    return settings.key(f"presence:{client_id}")


def presence_cursors(settings: Settings, client_id: str) -> str:
    """Hash: hub instance -> last cursor its sockets of one client were sent (refreshed)."""
    return settings.key(f"presence-cursor:{client_id}")


def handoff(settings: Settings, client_id: str) -> str:
    """List of cursors after which webhook delivery must backfill (the client's sockets all left)."""
    return settings.key(f"handoff:{client_id}")


def deadletters(settings: Settings) -> str:
    """Stream of events whose delivery failed for good; fields client_id, cursor, body, reason, ..."""
    return settings.key("deadletters")
