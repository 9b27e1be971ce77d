"""Every Redis client rthub makes comes from here: one server, a Redis Cluster, or a Sentinel-watched master.

The URL forms (docs/contract.md, "Redis"):
- `redis://host:port/db` (or `rediss://`): one server, or any node of a Redis Cluster; which one is
  found at start with one `INFO cluster`, so operators give the URL they already have;
- `redis+cluster://host:port[,host:port…]`: a cluster, named by one or more of its nodes (no probe);
- `redis+sentinel://[:password@]host:port[,host:port…]/service[/db]`: the master the Sentinels name
  for `service`, looked up again on every reconnect, so a failover is followed.

On a cluster whose nodes run Redis >= 7 the live channel is sharded (`SPUBLISH` / `SSUBSCRIBE`): a
publish reaches only the shard that owns the `{events}` slot. Elsewhere (one server, Sentinel, a
Redis 6.2 cluster) it is plain pub/sub. The plug-in and the hub decide the same way from the same
server, so they always agree. The asynchronous twin of `connect` is `hub/redis.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"
PROBE_TIMEOUT = 1.0
SHARDED_PUBSUB_MAJOR = 7


class BadRedisUrl(ValueError):
    """The Redis URL names no server rthub can use."""


@dataclass(frozen=True)
class Topology:
    """What a Redis URL names, and how to talk to it."""

    kind: Literal["single", "cluster", "sentinel"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None
    sharded: bool = False

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        hosts.append((host or "127.0.0.1", int(port) if port else default_port))
    return tuple(hosts)


def parse(url: str) -> Topology:
    """Read a URL without connecting; a plain `redis://` URL is `single` until `discover` probes it."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == SENTINEL_SCHEME:
        path = [piece for piece in parts.path.split("/") if piece]
        if not path:
            raise BadRedisUrl(f"{url}: a Sentinel URL names the service, e.g. redis+sentinel://host:26379/mymaster/0")
        db = int(path[1]) if len(path) > 1 else 0
        return Topology("sentinel", url, _hosts(parts.netloc, 26379), path[0], db, password)
    if parts.scheme == CLUSTER_SCHEME:
        return Topology("cluster", url, _hosts(parts.netloc, 6379), password=password)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise BadRedisUrl(f"{url}: expected redis://, rediss://, {CLUSTER_SCHEME}:// or {SENTINEL_SCHEME}://")
    return Topology("single", url, password=password)


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def discover(url: str, timeout: float = PROBE_TIMEOUT) -> Topology:
    """`parse`, then ask a plain URL's server whether it is a cluster node, and a cluster its version.

    When the server does not answer, the URL is taken as a single server: a cluster that is down at
    start is only recognised by the `redis+cluster://` form.
    """
    topology = parse(url)
    if topology.kind == "sentinel":
        return topology
    probe_url = url if topology.kind == "single" else _node_url(topology, *topology.nodes[0])
    try:
        with redis.Redis.from_url(probe_url, socket_timeout=timeout, socket_connect_timeout=timeout) as probe:
            info = probe.info()
    except (RedisError, OSError):
        return topology
    if not int(info.get("cluster_enabled", 0)):
        return topology
    host, port = topology.nodes[0] if topology.nodes else _hosts(urlsplit(url).netloc, 6379)[0]
    nodes = topology.nodes or ((host, port),)
    sharded = _major(str(info.get("redis_version", "0"))) >= SHARDED_PUBSUB_MAJOR
    return replace(topology, kind="cluster", nodes=nodes, sharded=sharded)


def _node_url(topology: Topology, host: str, port: int) -> str:
    auth = f":{topology.password}@" if topology.password else ""
    return f"redis://{auth}{host}:{port}/0"


def connect(topology: Topology, **options: Any) -> redis.Redis | redis.RedisCluster:
    """A blocking client for `topology`; `options` are connection settings (timeouts, retry)."""
    if topology.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in topology.nodes]
        return redis.RedisCluster(startup_nodes=nodes, password=topology.password, **options)
    if topology.kind == "sentinel":
        timeouts = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout") if name in options}
        sentinel = Sentinel(list(topology.nodes), sentinel_kwargs=timeouts, password=topology.password)
        return sentinel.master_for(topology.service, db=topology.db, **options)
    return redis.Redis.from_url(topology.url, **options)


def uses_sharded_pubsub(client: redis.Redis | redis.RedisCluster) -> bool:
    """Whether the live channel is sharded for this client: a cluster whose nodes run Redis >= 7."""
    if not isinstance(client, redis.RedisCluster):
        return False
    return _major(str(client.info("server").get("redis_version", "0"))) >= SHARDED_PUBSUB_MAJOR
