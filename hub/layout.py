"""The Redis layout the LMS side and the hub agree on (see docs/contract.md, "Redis").

- `{prefix}events`: capped stream of normalised events, field `e` = event JSON; the id is the cursor.
- `{prefix}live`: pub/sub channel; each message is `cursor + "\\n" + event JSON`.
- `{prefix}clients`: set of client ids; `{prefix}client:{id}`: hash, one client's registry record.
- `{prefix}changes`: pub/sub channel; a client id whenever a client is created, changed or revoked.
- `{prefix}anon:{consumer_type}`: hash LMS user id -> anonymised UUID.
- `{prefix}connections:{instance}`: hash client id -> live sockets on that hub instance (short TTL).
- `{prefix}deadletters:ingest`: capped stream of entries the hub could not carry (fields `cursor`,
  `reason`, `detail`, `raw`), written by the fan-out.
"""

from __future__ import annotations

from hub.config import Settings

# XADD and PUBLISH in one script, so an event is either in history and live, or in neither.
PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id
"""


def stream_key(settings: Settings) -> str:
    return settings.key("events")


def live_channel(settings: Settings) -> str:
    return settings.key("live")


def changes_channel(settings: Settings) -> str:
    return settings.key("changes")


def clients_key(settings: Settings) -> str:
    """Set of every registered client id."""
    return settings.key("clients")


def client_key(settings: Settings, client_id: str) -> str:
    """Hash of one client's registry record."""
    return settings.key(f"client:{client_id}")


def anon_key(settings: Settings, consumer_type: str) -> str:
    return settings.key(f"anon:{consumer_type}")


def connections_key(settings: Settings, instance: str) -> str:
    return settings.key(f"connections:{instance}")


def ingest_deadletters_key(settings: Settings) -> str:
    return settings.key("deadletters:ingest")
