"""Every Redis key and channel rthub uses, built here and nowhere else (docs/contract.md, "Redis").

The plug-in and the hub share this module, so the two sides cannot disagree on a name. Each function
takes anything with a `redis_prefix` (the plug-in's `PluginSettings` or the hub's `Settings`).

Every key carries a Redis Cluster hash tag (the part in braces) naming its logical unit, so that each
multi-key script and transaction touches one slot, and units spread over the cluster's shards:
- `{events}`: the event stream, its live channel and the ingest dead letters (the publish script
  appends and publishes in one slot, so a sharded `SPUBLISH` can ride in it);
- `{registry}`: the client records, the set of ids, the active-grants projection, the change channel
  (one client's save is one transaction);
- `{<client id>}`: everything kept per client (outbox, requeue, handoff, presence, lease, state,
  health, dead letters), so per-client delivery spreads across shards with the clients;
- single-key units (anonymised ids, revoked tokens, failure counters) need no shared tag.
The prefix must not contain braces, or it would become the tag.

Event path:
- `{prefix}{events}`: capped stream of normalised events, field `e` = event JSON; the id is the cursor.
- `{prefix}{events}:live`: pub/sub channel (sharded on a Redis 7 cluster); each message is
  `cursor + "\\n" + event JSON`.
- `{prefix}{events}:deadletters`: capped stream of entries the hub could not carry (fields `cursor`,
  `reason`, `detail`, `raw`), written by the fan-out.

Event bus ingest (`rthub ingest event-bus`, hub/eventbus/):
- `{prefix}{events}:eventbus:applied:{stream}:{group}`: hash bus message id -> rthub cursor (or dead-letter id) of
  messages appended but not yet acknowledged on the bus, so a message redelivered after a crash is
  acknowledged without being appended twice.
- `{prefix}{events}:deadletters:eventbus`: capped stream of bus messages the ingest could not carry (fields
  `stream`, `id`, `reason`, `detail`, `type`, `headers`, `raw`).

Control:
- `{prefix}{registry}:clients`: set of client ids; `{prefix}{registry}:client:{id}`: one client's record.
- `{prefix}{registry}:grants`: hash client id -> grant JSON of every active client, kept by the registry
  for the plug-in's preemptive filter (it never reads client records).
- `{prefix}{registry}:changes`: pub/sub channel; a client id whenever a client is created, changed or revoked.
- `{prefix}{registry}:interest`: integer, the interest version: incremented in the same transaction as every
  registry change that sends a change notice, so the plug-in can tell, with one GET, whether what the
  clients want may have changed since it loaded the grants (rthub_lms/filter.py).
- `{prefix}{registry}:keys`: hash of the key material every process must share (auth/keyring.py):
  `endpoint` = fingerprint of the endpoint-credential key (16 hex digits of its SHA-256), `signing` =
  JWKS JSON of the public signing keys in use (current first, then the retired ones still verified),
  `signing_kid` = the current signing key's id. Only public values: the private keys stay in files.
- `{prefix}{registry}:external-ids`: hash client id -> ExternalIdType name (`xapi`, `caliper`) of every
  active client whose actor is the LMS's external id, kept by the registry; the plug-in mirrors external
  ids of these types only.
- `{prefix}anon:{consumer_type}`: hash LMS user id -> anonymised UUID.
- `{prefix}extid:{type}`: hash LMS user id -> the LMS's ExternalId of that type, written by the plug-in
  (rthub_lms/external_ids.py), read by the hub for `lms-external-id` clients.
- `{prefix}{<id>}:presence` and `{prefix}{<id>}:presence-state`: which hub instances hold sockets of a
  client, until when, how many and the last cursor sent (hub/control/presence.py).
- `{prefix}revoked:{jti}`, `{prefix}{authfail}:client:{id}`, `{prefix}{authfail}:ip:{address}`: token
  revocation and authentication-failure counters.

Webhook delivery (docs/webhooks.md):
- `{prefix}{<id>}:outbox`, `:requeue`, `:handoff`, `:wh:lease`, `:wh:state`, `:wh:health`, `:wh:log`,
  `:wh:from`, `:deadletters`.
- `{prefix}wh:routed`: the last stream cursor webhook routing has queued for every client.
- `{prefix}wh:routing`: the routing lease (the instance that routes, while it renews it).

Backfill (`rthub backfill`, hub/backfill/), per client, apart from live delivery:
- `{prefix}{<id>}:backfill`: hash, the checkpoint of the client's unfinished backfill job.
- `{prefix}{<id>}:backfill:queue`: stream of the job's rendered events waiting for delivery (fields `c`, `b`).
- `{prefix}{<id>}:backfill:lease`: which `rthub backfill` process runs the job now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Prefixed(Protocol):
    @property
    def redis_prefix(self) -> str: ...


EVENTS_TAG = "{events}"
REGISTRY_TAG = "{registry}"

# XADD and PUBLISH in one script, so an event is either in history and live, or in neither.
PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id
"""

# The same for a batch (log replay, spool flush): ARGV[2..] are events, appended in order.
PUBLISH_MANY_SCRIPT = """
local ids = {}
for i = 2, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
  redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[i])
  ids[#ids + 1] = id
end
return ids
"""


def publish_script(sharded: bool, many: bool = False) -> str:
    """The publish script for a live channel that is sharded (SSUBSCRIBE: a Redis >= 7 cluster, where a
    publish then reaches only the shard owning the `{events}` slot) or plain (SUBSCRIBE)."""
    return for_live_channel(PUBLISH_MANY_SCRIPT if many else PUBLISH_SCRIPT, sharded)


def for_live_channel(script: str, sharded: bool) -> str:
    """A Lua script that publishes on the live channel, with SPUBLISH where the channel is sharded."""
    return script.replace("'PUBLISH'", "'SPUBLISH'") if sharded else script


def client_tag(client_id: str) -> str:
    """The hash tag of everything kept per client: the client's keys share its slot."""
    return "{" + client_id + "}"


def stream_key(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}{EVENTS_TAG}"


def live_channel(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}{EVENTS_TAG}:live"


def ingest_deadletters_key(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}{EVENTS_TAG}:deadletters"


def eventbus_applied(settings: Prefixed, stream: str, group: str) -> str:
    """Hash bus message id -> what it became, for messages between their append and their ack."""
    return f"{settings.redis_prefix}{EVENTS_TAG}:eventbus:applied:{stream}:{group}"


def eventbus_deadletters(settings: Prefixed) -> str:
    """Capped stream of event bus messages the ingest dead-lettered, with the reason."""
    return f"{settings.redis_prefix}{EVENTS_TAG}:deadletters:eventbus"


def changes_channel(settings: Prefixed) -> str:
    return f"{settings.redis_prefix}{REGISTRY_TAG}:changes"


def clients_key(settings: Prefixed) -> str:
    """Set of every registered client id."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:clients"


def interest_version_key(settings: Prefixed) -> str:
    """Integer bumped with every registry change, in its transaction: the version of what clients want."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:interest"


def client_key(settings: Prefixed, client_id: str) -> str:
    """Hash of one client's registry record (in the registry's slot, so a save is one transaction)."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:client:{client_id}"


def data_marker_key(settings: Prefixed) -> str:
    """A random value the hub writes once: gone after a Redis restart, Redis lost rthub's data (hub.redis_safety)."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:marker"


def active_grants_key(settings: Prefixed) -> str:
    """Hash client id -> grant JSON, active clients only: what the preemptive filter reads."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:grants"


def key_material(settings: Prefixed) -> str:
    """Hash: the endpoint key's fingerprint and the public signing keys every process must agree on."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:keys"


def external_id_clients_key(settings: Prefixed) -> str:
    """Hash client id -> ExternalIdType name, active `lms-external-id` clients only: what the plug-in mirrors."""
    return f"{settings.redis_prefix}{REGISTRY_TAG}:external-ids"


def external_ids_key(settings: Prefixed, id_type: str) -> str:
    """Hash LMS user id -> the LMS's ExternalId of `id_type`, mirrored by the plug-in."""
    return f"{settings.redis_prefix}extid:{id_type}"


def anon_key(settings: Prefixed, consumer_type: str) -> str:
    return f"{settings.redis_prefix}anon:{consumer_type}"


def _per_client(settings: Prefixed, client_id: str, name: str) -> str:
    return f"{settings.redis_prefix}{client_tag(client_id)}:{name}"


def presence(settings: Prefixed, client_id: str) -> str:
    """Sorted set: hub instance -> expiry (ms, Redis clock) of its live sockets of one client."""
    return _per_client(settings, client_id, "presence")


def presence_state(settings: Prefixed, client_id: str) -> str:
    """Hash: `{instance}` -> last cursor its sockets of one client were sent; `{instance}:n` -> sockets;
    `{instance}:from` -> where its sockets took over from webhooks (websocket+webhook clients)."""
    return _per_client(settings, client_id, "presence-state")


def revoked_token(settings: Prefixed, jti: str) -> str:
    return f"{settings.redis_prefix}revoked:{jti}"


def auth_failures(settings: Prefixed, kind: str, who: str) -> str:
    """Failed-authentication counter; `kind` is `client` or `ip`. Both counters of one request share
    the `{authfail}` slot, so the limiter reads them with one MGET on a cluster too."""
    return f"{settings.redis_prefix}{{authfail}}:{kind}:{who}"


def outbox(settings: Prefixed, client_id: str) -> str:
    """Stream of live events queued for one client; entry id = event cursor, field `b` = body."""
    return _per_client(settings, client_id, "outbox")


def requeue(settings: Prefixed, client_id: str) -> str:
    """Stream of events queued again out of band (dead-letter replay, socket handoff); fields `c`, `b`."""
    return _per_client(settings, client_id, "requeue")


def lease(settings: Prefixed, client_id: str) -> str:
    """Which hub instance delivers for one client right now (`SET NX PX`, renewed)."""
    return _per_client(settings, client_id, "wh:lease")


def state(settings: Prefixed, client_id: str) -> str:
    """Hash: the batch in flight (source, first, last), its attempts and next attempt time."""
    return _per_client(settings, client_id, "wh:state")


def health(settings: Prefixed, client_id: str) -> str:
    """Hash: last delivery / failure times, last error, delivered, failed attempts, dead letters."""
    return _per_client(settings, client_id, "wh:health")


def delivery_log(settings: Prefixed, client_id: str) -> str:
    """List of the last delivery attempts (JSON: time, status, latency, error), newest first."""
    return _per_client(settings, client_id, "wh:log")


def handoff(settings: Prefixed, client_id: str) -> str:
    """List of `from,to` cursor ranges a socket of the client was sent; webhook delivery skips them."""
    return _per_client(settings, client_id, "handoff")


def routed(settings: Prefixed) -> str:
    """String: the stream cursor up to which webhook routing has appended to every outbox."""
    return f"{settings.redis_prefix}wh:routed"


def routing_lease(settings: Prefixed) -> str:
    """String: the token of the one hub instance that routes the stream into the webhook outboxes."""
    return f"{settings.redis_prefix}wh:routing"


def grant_changes(settings: Prefixed, client_id: str) -> str:
    """List of the client's last grant changes, oldest first (JSON: the stream's newest cursor just before
    the change, and the grant until then): a resume judges what was published before a change by it."""
    return _per_client(settings, client_id, "grants")


def client_routing(settings: Prefixed, client_id: str) -> str:
    """Hash: where routing stands for one client apart from everyone (`joined`: the record's
    `routed_from` already accounted for; `from`: the cursor after which it still has to be routed)."""
    return _per_client(settings, client_id, "wh:from")


def deadletters(settings: Prefixed, client_id: str) -> str:
    """Stream of one client's events whose delivery failed for good; fields cursor, body, reason, ...

    Per client, so the lease-fenced script that gives up on a batch stays in the client's slot.
    """
    return _per_client(settings, client_id, "deadletters")


def backfill_checkpoint(settings: Prefixed, client_id: str) -> str:
    """Hash: where the client's unfinished backfill job stands (its sources, the file and line read up to,
    the events queued and delivered, its counts), written in one transaction with the queue appends."""
    return _per_client(settings, client_id, "backfill")


def backfill_queue(settings: Prefixed, client_id: str) -> str:
    """Stream of a backfill job's rendered events not yet delivered; fields `c` (message id), `b` (body).
    Apart from the outbox, so a backfill never delays the client's live events."""
    return _per_client(settings, client_id, "backfill:queue")


def backfill_lease(settings: Prefixed, client_id: str) -> str:
    """Which `rthub backfill` process runs the client's job now (`SET NX PX`, renewed)."""
    return _per_client(settings, client_id, "backfill:lease")


def client_keys(settings: Prefixed, client_id: str) -> list[str]:
    """Every key kept for one client outside the registry, all in the client's slot."""
    return [
        presence(settings, client_id), presence_state(settings, client_id), outbox(settings, client_id),
        requeue(settings, client_id), lease(settings, client_id), state(settings, client_id),
        health(settings, client_id), handoff(settings, client_id), deadletters(settings, client_id),
        delivery_log(settings, client_id), client_routing(settings, client_id), grant_changes(settings, client_id),
        backfill_checkpoint(settings, client_id), backfill_queue(settings, client_id),
        backfill_lease(settings, client_id),
    ]


@dataclass(frozen=True)
class Prefix:
    """A bare prefix, for callers that have no settings object (tools, tests)."""

    redis_prefix: str
