"""The hub's Redis clients: the asynchronous twin of `rthub_lms.connect` (same URL forms, same topology).

`connect()` and `client()` are where the hub, its CLI and its tools make Redis clients (the live
feed's subscription: `hub.ingest.subscription`).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel

from rthub_lms.connect import Topology, discover

Client = aioredis.Redis | aioredis.RedisCluster

CLUSTER_POOL_FACTOR = 4  # see `connect`


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
