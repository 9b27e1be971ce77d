"""Every Redis key and channel rthub uses, built here and nowhere else (docs/contract.md, "Redis").

The plug-in and the hub share this module, so the two sides cannot disagree on a name. Each function
takes anything with a `redis_prefix` (the plug-in's `PluginSettings` or the hub's `Settings`).

Event path:
- `{prefix}events`: capped stream of normalised events, field `e` = event JSON; the id is the cursor.
- `{prefix}live`: pub/sub channel; each message is `cursor + "\\n" + event JSON`.
- `{prefix}deadletters:ingest`: capped stream of entries the hub could not carry (fields `cursor`,
  `reason`, `detail`, `raw`), written by the fan-out.

Control:
- `{prefix}clients`: set of client ids; `{prefix}client:{id}`: hash, one client's registry record.
- `{prefix}grants`: hash client id -> grant JSON of every active client, kept by the registry for the
  plug-in's preemptive filter (it never reads client records).
- `{prefix}changes`: pub/sub channel; a client id whenever a client is created, changed or revoked.
- `{prefix}anon:{consumer_type}`: hash LMS user id -> anonymised UUID.
- `{prefix}presence:{id}` and `{prefix}presence-state:{id}`: which hub instances hold sockets of a
  client, until when, how many and the last cursor sent (hub/control/presence.py).
- `{prefix}revoked:{jti}`, `{prefix}authfail:client:{id}`, `{prefix}authfail:ip:{address}`: token
  revocation and authentication-failure counters.

Webhook delivery (docs/webhooks.md):
- `{prefix}outbox:{id}`, `{prefix}requeue:{id}`, `{prefix}handoff:{id}`, `{prefix}wh:lease:{id}`,
  `{prefix}wh:state:{id}`, `{prefix}wh:health:{id}`, `{prefix}deadletters`.
- `{prefix}wh:routed`: the last stream cursor webhook routing has queued for every client.
"""

from __future__ import annotations

from typing import Protocol


class Prefixed(Protocol):
    @property
    def redis_prefix(self) -> str: ...


# XADD and PUBLISH in one script, so an event is either in history and live, or in neither.
PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id
"""


def stream_key(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}events"


def live_channel(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}live"


def ingest_deadletters_key(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}deadletters:ingest"


def changes_channel(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}changes"


def clients_key(settings: Prefixed) -> str:
    """Set of every registered client id."""
    return f"{settings.redis_prefix}clients"


def client_key(settings: Prefixed, client_id: str) -> str:
    """Hash of one client's registry record."""
    return f"{settings.redis_prefix}client:{client_id}"


def active_grants_key(settings: Prefixed) -> str:
    """Hash client id -> grant JSON, active clients only: what the preemptive filter reads."""
    return f"{settings.redis_prefix}grants"


def anon_key(settings: Prefixed, consumer_type: str) -> str:
    return f"{settings.redis_prefix}anon:{consumer_type}"


def presence(settings: Prefixed, client_id: str) -> str:
    """Sorted set: hub instance -> expiry (ms, Redis clock) of its live sockets of one client."""
    return f"{settings.redis_prefix}presence:{client_id}"


def presence_state(settings: Prefixed, client_id: str) -> str:
    """Hash: `{instance}` -> last cursor its sockets of one client were sent; `{instance}:n` -> sockets;
    `{instance}:from` -> where its sockets took over from webhooks (websocket+webhook clients)."""
    return f"{settings.redis_prefix}presence-state:{client_id}"


def revoked_token(settings: Prefixed, jti: str) -> str:
    return f"{settings.redis_prefix}revoked:{jti}"


def auth_failures(settings: Prefixed, kind: str, who: str) -> str:
    """Failed-authentication counter; `kind` is `client` or `ip`."""
    return f"{settings.redis_prefix}authfail:{kind}:{who}"


def outbox(settings: Prefixed, client_id: str) -> str:
    """Stream of live events queued for one client; entry id = event cursor, field `b` = body."""
    return f"{settings.redis_prefix}outbox:{client_id}"


def requeue(settings: Prefixed, client_id: str) -> str:
    """Stream of events queued again out of band (dead-letter replay, socket handoff); fields `c`, `b`."""
    return f"{settings.redis_prefix}requeue:{client_id}"


def lease(settings: Prefixed, client_id: str) -> str:
    """Which hub instance delivers for one client right now (`SET NX PX`, renewed)."""
    return f"{settings.redis_prefix}wh:lease:{client_id}"


def state(settings: Prefixed, client_id: str) -> str:
    """Hash: the batch in flight (source, first, last), its attempts and next attempt time."""
    return f"{settings.redis_prefix}wh:state:{client_id}"


def health(settings: Prefixed, client_id: str) -> str:
    """Hash: last delivery / failure times, last error, delivered, failed attempts, dead letters."""
    return f"{settings.redis_prefix}wh:health:{client_id}"


def handoff(settings: Prefixed, client_id: str) -> str:
    """List of `from,to` cursor ranges a socket of the client was sent; webhook delivery skips them."""
    return f"{settings.redis_prefix}handoff:{client_id}"


def routed(settings: Prefixed) -> str:
    """String: the stream cursor up to which webhook routing has appended to every outbox."""
    return f"{settings.redis_prefix}wh:routed"


def deadletters(settings: Prefixed) -> str:
    """Stream of events whose delivery failed for good; fields client_id, cursor, body, reason, ..."""
    return f"{settings.redis_prefix}deadletters"


def client_keys(settings: Prefixed, client_id: str) -> list[str]:
    """Every per-client key, for deleting a client without leaving anything behind."""
    return [
        client_key(settings, client_id), presence(settings, client_id), presence_state(settings, client_id),
        outbox(settings, client_id), requeue(settings, client_id), lease(settings, client_id),
        state(settings, client_id), health(settings, client_id), handoff(settings, client_id),
    ]
