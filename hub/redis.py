"""The hub's Redis clients: the asynchronous twin of `rthub_lms.connect` (same URL forms, same topology),
and how the hub waits out a Redis outage.

`connect()` and `client()` are where the hub, its CLI and its tools make Redis clients (the live
feed's subscription: `hub.ingest.subscription`). `is_transient` is the one judgement of whether a
Redis error means "not now" (wait and retry the same work) or "never"; `Backoff` spaces the retries.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rthub_lms.connect import Topology, discover

Client = aioredis.Redis | aioredis.RedisCluster

CLUSTER_POOL_FACTOR = 4  # see `connect`

# Redis unreachable: refused, reset, timed out, still loading (redis-py's `BusyLoadingError` is a
# connection error). `hub.ingest.BrokerUnavailable` is an OSError too.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Redis answering but refusing for now (after a failover, out of memory, loading): wait, as for an
# outage; these never mean the request itself is bad. redis-py maps most replies to a class; an
# error raised inside a script keeps only the reply's first word.
TRANSIENT_ERRORS = (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError)
TRANSIENT_REPLIES = ("READONLY", "OOM", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN")
RETRY_FIRST = 0.05
RETRY_MAX = 2.0


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


def text(value: bytes | str) -> str:
    """A Redis reply as text: clients made without `decode_responses` answer bytes."""
    return value.decode() if isinstance(value, bytes) else value


def is_transient(exc: BaseException) -> bool:
    """Redis away, or answering "not now" (failover, out of memory), rather than "never". A wrapper
    raised from a Redis error (`hub.ingest.BrokerUnavailable`) is judged by that error (a Redis error
    is judged by itself: redis-py chains a transaction's abort to the refusal that caused it)."""
    if not isinstance(exc, RedisError) and isinstance(exc.__cause__, RedisError):
        return is_transient(exc.__cause__)
    if isinstance(exc, UNREACHABLE):
        return True
    return isinstance(exc, ResponseError) and (
        isinstance(exc, TRANSIENT_ERRORS) or str(exc).startswith(TRANSIENT_REPLIES)
    )


class Backoff:
    """The waits between retries of the same work while Redis is away: from `first`, doubling up to
    `most`; `reset` once it succeeded, so the next outage starts short again."""

    def __init__(self, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> None:
        self.first = first
        self.most = max(first, most)
        self._delay = first

    def next_delay(self) -> float:
        """The wait before the next retry (each one twice the last, up to `most`)."""
        delay = self._delay
        self._delay = min(delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self._delay = self.first
