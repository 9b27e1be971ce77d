"""Appends to rthub's stream (and its dead letters) at most once per bus message.

The bus acknowledgement and rthub's append cannot be one transaction (they may not even share a Redis),
so the ingest appends first and acknowledges after: nothing is lost if it dies in between, but the
message comes back. To keep that from becoming a duplicate, each append runs in a Lua script that
also records the bus message id in `{prefix}eventbus:applied:{stream}:{group}`, and does nothing
but return the earlier result when the id is already there. The record is dropped once the
message is acknowledged, so the hash only holds messages in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from rthub_lms.backend import StreamWriter
from rthub_lms.connect import uses_sharded_pubsub
from rthub_lms.keys import eventbus_applied, eventbus_deadletters, for_live_channel
from rthub_lms.settings import StreamSettings

# The plug-in's PUBLISH_SCRIPT (rthub_lms/keys.py) behind a guard on the bus message id.
PUBLISH_ONCE_SCRIPT = """
local done = redis.call('HGET', KEYS[3], ARGV[1])
if done then return {done, 0} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[3])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], id)
return {id, 1}
"""

DEADLETTER_ONCE_SCRIPT = """
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done then return {done, 0} end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[1], ARGV[1], 'deadletter:' .. id)
return {id, 1}
"""

DEADLETTERS_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class Publish:
    """An encoded normalised event to append for bus message `bus_id`."""

    bus_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A bus message that cannot be carried, with why."""

    bus_id: str
    fields: dict[str, str | bytes]


@dataclass(frozen=True, slots=True)
class Written:
    """Where an append went (`cursor` in rthub's stream or the dead letters) and whether it is new."""

    bus_id: str
    cursor: str
    fresh: bool


class OnceWriter(StreamWriter):
    """The plug-in's stream writer, keyed by bus message id so a redelivered message is appended once."""

    def __init__(
        self, client: redis.Redis, settings: StreamSettings, stream: str, group: str, maxlen: int | None = None
    ) -> None:
        sharded = uses_sharded_pubsub(client)
        super().__init__(client, settings, maxlen, sharded=sharded)
        self._applied = eventbus_applied(settings, stream, group)
        self._deadletters = eventbus_deadletters(settings)
        self._publish_once = client.register_script(for_live_channel(PUBLISH_ONCE_SCRIPT, sharded))
        # A cluster client's pipeline refuses scripts: there, appends go one call at a time.
        self._pipelined = not isinstance(client, redis.RedisCluster)
        self._deadletter_once = client.register_script(DEADLETTER_ONCE_SCRIPT)

    def write_batch(self, items: Sequence[Publish | DeadLetter]) -> list[Written]:
        """Append every item, in order, in one round trip; Redis errors propagate."""
        pipe = self._client.pipeline(transaction=False) if self._pipelined else None
        results = []
        for item in items:
            if isinstance(item, Publish):
                result = self._publish_once(
                    keys=[*self._keys, self._applied], args=[item.bus_id, self._maxlen, item.payload], client=pipe
                )
            else:
                flat = [part for pair in item.fields.items() for part in pair]
                result = self._deadletter_once(
                    keys=[self._applied, self._deadletters], args=[item.bus_id, DEADLETTERS_MAXLEN, *flat], client=pipe
                )
            results.append(result)
        if pipe is not None:
            results = pipe.execute() if items else []
        pairs = zip(items, results, strict=True)
        return [Written(item.bus_id, cursor.decode(), bool(fresh)) for item, (cursor, fresh) in pairs]

    def forget(self, bus_ids: Sequence[str]) -> None:
        """Drop the records of acknowledged messages."""
        if bus_ids:
            self._client.hdel(self._applied, *bus_ids)

    def applied(self) -> list[str]:
        """Bus ids recorded as appended; after a crash between ack and `forget`, some may be acknowledged."""
        return [raw.decode() for raw in self._client.hkeys(self._applied)]
