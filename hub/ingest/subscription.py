"""The live feed's pub/sub connection, read one socket read at a time.

redis-py's `PubSub.get_message` hands over one message per call, through a retry wrapper, a
timeout context and its RESP parser: ~25 µs per message, and about a sixth of a busy hub's CPU.
A subscribed connection carries nothing but pushes, so `Subscription` takes the connection redis-py
opened (TLS, AUTH, HELLO and the topology are redis-py's), sends the subscribe itself, and splits
whatever each read brings into replies (`PushParser`). One read that carries many messages (the hub
fell behind) then costs one wake-up, and its entries reach the fan-out in one burst.

A server that drops the subscription (`unsubscribe`/`sunsubscribe`: a sharded channel's slot moved)
or closes the connection raises `SubscriptionLost`, so the feed resubscribes and reads back the gap.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from hub.redis import Client

log = logging.getLogger("rthub.subscription")

READ_SIZE = 256 * 1024
# An unfinished reply longer than this is not a pub/sub message of ours (events are at most 64 KB).
MAX_PARTIAL = 4 * 1024 * 1024
MESSAGES = frozenset({b"message", b"smessage"})
CONFIRMATIONS = frozenset({b"subscribe", b"ssubscribe"})
ENDINGS = frozenset({b"unsubscribe", b"sunsubscribe"})
# What a subscriber to one cluster node keeps of the cluster client's connection settings.
NODE_SETTINGS = frozenset({
    "host", "port", "username", "password", "socket_timeout", "socket_connect_timeout", "socket_keepalive",
    "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
})

Scalar = bytes | int | None
Reply = list[Scalar] | Scalar | ResponseError


class SubscriptionLost(RedisConnectionError):
    """The server closed the connection or ended the subscription."""


class ProtocolError(SubscriptionLost):
    """Bytes that are not a RESP reply a subscribed connection can carry."""


_INCOMPLETE = object()


class PushParser:
    """Splits the bytes of a subscribed connection into whole replies, keeping a partial one for the next read.

    Handles what such a connection carries in RESP2 and RESP3: flat arrays and pushes (`*`, `>`) of
    bulk strings, integers and nulls, and simple strings and errors (a PING's reply, a refusal).
    """

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Reply]:
        buffer = self._partial + data if self._partial else data
        replies: list[Reply] = []
        position, end = 0, len(buffer)
        while position < end:
            reply, after = _reply(buffer, position)
            if reply is _INCOMPLETE:
                break
            replies.append(reply)  # type: ignore[arg-type]
            position = after
        self._partial = buffer[position:]
        if len(self._partial) > MAX_PARTIAL:
            raise ProtocolError(f"an unfinished reply of over {MAX_PARTIAL} bytes")
        return replies


def _reply(buffer: bytes, position: int) -> tuple[object, int]:
    kind = buffer[position]
    if kind not in (0x2A, 0x3E):  # `*` array, `>` push
        return _scalar(buffer, position)
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        return _INCOMPLETE, position
    count = _integer(buffer[position + 1 : line_end])
    after = line_end + 2
    if count < 0:
        return None, after
    items: list[object] = []
    for _ in range(count):
        item, after = _scalar(buffer, after)
        if item is _INCOMPLETE:
            return _INCOMPLETE, position
        items.append(item)
    return items, after


def _scalar(buffer: bytes, position: int) -> tuple[object, int]:
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        return _INCOMPLETE, position
    kind, head, after = buffer[position], buffer[position + 1 : line_end], line_end + 2
    if kind == 0x24:  # `$` bulk string
        length = _integer(head)
        if length < 0:
            return None, after
        stop = after + length
        if len(buffer) < stop + 2:
            return _INCOMPLETE, position
        if buffer[stop : stop + 2] != b"\r\n":
            raise ProtocolError("a bulk string longer than its header says")
        return buffer[after:stop], stop + 2
    if kind == 0x3A:  # `:` integer
        return _integer(head), after
    if kind == 0x2B:  # `+` simple string
        return head, after
    if kind == 0x2D:  # `-` error
        return ResponseError(head.decode("utf-8", "replace")), after
    if kind == 0x5F:  # `_` null (RESP3)
        return None, after
    raise ProtocolError(f"unexpected reply type {chr(kind)!r}")


def _integer(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"not an integer: {text[:20]!r}") from None


class Subscription:
    """One connection subscribed to one channel (`open`); `messages()` returns the payloads of a read."""

    def __init__(self, pool: ConnectionPool, conn: AbstractConnection, owned: aioredis.Redis | None) -> None:
        self._pool = pool
        self._conn = conn
        self._owned = owned  # a client made for one cluster node, closed with the subscription
        reader = getattr(conn, "_reader", None)
        if not isinstance(reader, asyncio.StreamReader):
            raise RuntimeError(f"redis-py's {type(conn).__name__} has no stream reader: "
                               "use a redis release rthub supports")
        self._reader = reader
        self._parser = PushParser()
        self._early: list[bytes] = []

    @classmethod
    async def open(cls, redis: Client, channel: str, sharded: bool) -> Subscription:
        """Subscribe to `channel` and read the confirmation: messages follow.

        On a cluster a sharded channel must be read from the shard that owns its slot; the slot map is
        refreshed first, so a resubscribe after a failover or resharding finds the new owner.
        """
        owned = None
        if isinstance(redis, aioredis.RedisCluster):
            try:
                await redis.initialize()  # a first use sets up the command parser too (the live check needs it)
                await redis.nodes_manager.initialize()
            except RedisError as exc:
                log.warning("cluster slot map not refreshed: %s", exc)
            node = redis.get_node_from_key(channel)
            owned = aioredis.Redis(**{k: v for k, v in node.connection_kwargs.items() if k in NODE_SETTINGS})
            redis = owned
        pool = redis.connection_pool
        conn = await pool.get_connection()
        try:
            subscription = cls(pool, conn, owned)
            await conn.send_command("SSUBSCRIBE" if sharded else "SUBSCRIBE", channel, check_health=False)
            await subscription._confirmed()
        except BaseException:
            await _discard(pool, conn, owned)
            raise
        return subscription

    async def _confirmed(self) -> None:
        while True:
            replies = await self._read()
            for index, reply in enumerate(replies):
                if isinstance(reply, list) and reply and reply[0] in CONFIRMATIONS:
                    self._early = self._payloads(replies[index + 1 :])
                    return
                self._check(reply)

    async def messages(self) -> list[bytes]:
        """The payloads of the messages in the next read (waiting for one), in order."""
        if self._early:
            early, self._early = self._early, []
            return early
        while not (payloads := self._payloads(await self._read())):
            pass
        return payloads

    async def _read(self) -> list[Reply]:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise SubscriptionLost("Redis closed the subscribed connection")
        return self._parser.feed(data)

    def _payloads(self, replies: list[Reply]) -> list[bytes]:
        payloads = []
        for reply in replies:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] in MESSAGES:
                payloads.append(reply[2])
            else:
                self._check(reply)
        return payloads  # type: ignore[return-value]

    @staticmethod
    def _check(reply: Reply) -> None:
        if isinstance(reply, ResponseError):
            raise reply
        if isinstance(reply, list) and reply and reply[0] in ENDINGS:
            raise SubscriptionLost(f"the server ended the subscription ({reply[0]!r})")

    async def close(self) -> None:
        await _discard(self._pool, self._conn, self._owned)


async def _discard(pool: ConnectionPool, conn: AbstractConnection, owned: aioredis.Redis | None) -> None:
    """Drop the subscribed connection (it cannot serve commands again) and give its slot back to the pool."""
    await conn.disconnect(nowait=True)
    await pool.release(conn)
    if owned is not None:
        await owned.aclose()
