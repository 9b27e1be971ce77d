"""The Redis URL forms operators give (docs/contract.md, "Where Redis is")."""

from __future__ import annotations

import pytest

from rthub_lms.connect import BadRedisUrl, discover, parse
from tests.servers import RedisServer


def test_sentinel_and_cluster_urls_name_their_nodes_service_and_database() -> None:
    sentinel = parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2")
    assert (sentinel.kind, sentinel.nodes, sentinel.service, sentinel.db, sentinel.password) == (
        "sentinel", (("10.0.0.1", 26379), ("10.0.0.2", 26379)), "mymaster", 2, "s3cret",
    )
    cluster = parse("redis+cluster://node-a:7000,node-b:7001")
    assert (cluster.kind, cluster.nodes) == ("cluster", (("node-a", 7000), ("node-b", 7001)))


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis+sentinel://127.0.0.1:26379"])
def test_unusable_urls_are_refused_with_the_reason(url: str) -> None:
    with pytest.raises(BadRedisUrl, match="redis"):
        parse(url)


def test_a_single_server_stays_single_with_plain_pubsub(redis_server: RedisServer) -> None:
    topology = discover(redis_server.url)
    assert (topology.kind, topology.sharded) == ("single", False)
