"""The hub's Redis clients: the asynchronous twin of `rthub_lms.connect` (same URL forms, same topology).

`connect()` and `client()` are where the hub, its CLI and its tools make Redis clients; `subscribe()`
opens a pub/sub connection on the right node: the shard that owns a sharded channel's slot on a
cluster, any node for a plain channel.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from rthub_lms.connect import Topology, discover

log = logging.getLogger("rthub.redis")

Client = aioredis.Redis | aioredis.RedisCluster

# Messages a subscriber reads: plain pub/sub, and sharded pub/sub (Redis 7).
MESSAGE_TYPES = frozenset({"message", "smessage", b"message", b"smessage"})
CONFIRM_TYPES = frozenset({"subscribe", "ssubscribe", b"subscribe", b"ssubscribe"})
CLUSTER_POOL_FACTOR = 4  # see `connect`
# What a subscriber to one cluster node keeps of the cluster client's connection settings.
NODE_SETTINGS = frozenset({
    "host", "port", "username", "password", "socket_timeout", "socket_connect_timeout", "socket_keepalive",
    "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "health_check_interval",
})


def connect(topology: Topology, *, max_connections: int | None = None, **options: Any) -> Client:
    """A client for `topology`; `options` are redis-py connection settings.

    With `max_connections`, a single server's pool makes a burst wait (up to `timeout` seconds) for a
    connection instead of failing; a cluster node's pool cannot wait, so it gets
    `CLUSTER_POOL_FACTOR` times as many connections instead.
    """
    if topology.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in topology.nodes]
        if max_connections is not None:
            options["max_connections"] = max_connections * CLUSTER_POOL_FACTOR
        options.pop("timeout", None)
        options.pop("health_check_interval", None)
        return aioredis.RedisCluster(startup_nodes=nodes, password=topology.password, **options)
    if topology.kind == "sentinel":
        options.pop("timeout", None)
        timeouts = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout") if name in options}
        sentinel = Sentinel(list(topology.nodes), sentinel_kwargs=timeouts, password=topology.password)
        return sentinel.master_for(topology.service, db=topology.db, **options)
    if max_connections is not None:
        pool = aioredis.BlockingConnectionPool.from_url(topology.url, max_connections=max_connections, **options)
        return aioredis.Redis(connection_pool=pool)
    options.pop("timeout", None)
    return aioredis.Redis.from_url(topology.url, **options)


def client(url: str, **options: Any) -> Client:
    """A client for whatever `url` names (probed once, synchronously: call it at start)."""
    return connect(discover(url), **options)


async def subscribe(redis: Client, channel: str, sharded: bool) -> PubSub:
    """A pub/sub connection subscribed to `channel`, its confirmation read: messages follow.

    On a cluster a sharded channel must be read from the shard that owns its slot; the slot map is
    refreshed first, so a resubscribe after a failover or resharding finds the new owner.
    """
    if isinstance(redis, aioredis.RedisCluster):
        try:
            await redis.initialize()  # a first use sets up the command parser too (the live check needs it)
            await redis.nodes_manager.initialize()
        except RedisError as exc:
            log.warning("cluster slot map not refreshed: %s", exc)
        node = redis.get_node_from_key(channel)
        settings = {name: value for name, value in node.connection_kwargs.items() if name in NODE_SETTINGS}
        pubsub = aioredis.Redis(**settings).pubsub()
    else:
        pubsub = redis.pubsub()
    try:
        await (pubsub.ssubscribe(channel) if sharded else pubsub.subscribe(channel))
        while (await pubsub.get_message(timeout=None) or {}).get("type") not in CONFIRM_TYPES:
            pass
    except BaseException:
        await pubsub.aclose()
        raise
    return pubsub


def is_message(message: dict | None) -> bool:
    """A published message (plain or sharded), not a subscription confirmation."""
    return message is not None and message.get("type") in MESSAGE_TYPES
