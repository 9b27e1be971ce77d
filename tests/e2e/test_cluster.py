"""On a real three-master Redis Cluster: the commands that used to fail, the key layout, sharded pub/sub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
import redis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from rthub_lms import keys
from rthub_lms.backend import RealtimeBackend, StreamWriter
from rthub_lms.connect import connect, discover
from rthub_lms.events import normalise
from tests import ROOT, SEND_TIMEOUT
from tests.hubproc import HubProcess
from tests.servers import RedisCluster
from tests.waiting import async_wait_until, wait_until
from tests.wsclient import collect
from tests.wsclient import connect as ws_connect


def _rthub(cluster: RedisCluster, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTHUB_REDIS_URL": cluster.url, "RTHUB_REDIS_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


def test_the_url_of_any_node_is_recognised_as_a_cluster(redis_cluster: RedisCluster) -> None:
    for node in redis_cluster.nodes:
        topology = discover(node.url)
        assert topology.kind == "cluster"
        version = redis.Redis.from_url(node.url).info("server")["redis_version"]
        assert topology.sharded == (int(version.split(".")[0]) >= 7), "sharded pub/sub from Redis 7 on"
    named = discover("redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes))
    assert named.kind == "cluster" and len(named.nodes) == 3


def test_clients_create_and_revoke_work_from_the_command_line(redis_cluster: RedisCluster, prefix: str) -> None:
    created = _rthub(
        redis_cluster, prefix, "clients", "create", "--name", "LRS", "--type", "enterprise",
        "--translator", "caliper", "--grant", '{"orgs": ["MITx"]}', "--json",
    )
    assert created.returncode == 0, created.stderr
    client_id = json.loads(created.stdout)["client_id"]
    stored = redis_cluster.client()
    settings = keys.Prefix(prefix)
    assert stored.sismember(keys.clients_key(settings), client_id)
    assert json.loads(stored.hget(keys.active_grants_key(settings), client_id)) == [{"orgs": ["MITx"]}]
    revoked = _rthub(redis_cluster, prefix, "clients", "revoke", client_id)
    assert revoked.returncode == 0, revoked.stderr
    assert stored.hget(keys.client_key(settings, client_id), "status") == b"revoked"
    assert not stored.hexists(keys.active_grants_key(settings), client_id)


def test_each_unit_shares_one_slot_and_clients_spread_over_the_shards(redis_cluster: RedisCluster) -> None:
    settings = keys.Prefix("layout:")
    cluster = redis_cluster.client()
    slot = cluster.keyslot  # CRC16 of the hash tag, as the servers compute it
    events = {keys.stream_key(settings), keys.live_channel(settings), keys.ingest_deadletters_key(settings)}
    registry = {
        keys.clients_key(settings), keys.client_key(settings, "cl_x"), keys.active_grants_key(settings),
        keys.changes_channel(settings),
    }
    assert len({slot(key) for key in events}) == 1
    assert len({slot(key) for key in registry}) == 1
    owners = set()
    for number in range(12):
        client_id = f"cl_{number:04d}"
        per_client = keys.client_keys(settings, client_id)
        assert len({slot(key) for key in per_client}) == 1
        owners.add(cluster.get_node_from_key(keys.outbox(settings, client_id)).name)
    assert len(owners) == 3, "twelve clients' outboxes should land on every shard"


def test_the_live_channel_is_sharded_and_read_from_the_shard_that_owns_it(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    hub = HubProcess(redis_cluster.url, prefix)
    hub.start()
    try:
        channel = keys.live_channel(keys.Prefix(prefix))
        owner = redis_cluster.client().get_node_from_key(channel)
        with redis.Redis(host=owner.host, port=owner.port) as node:
            if int(node.info("server")["redis_version"].split(".")[0]) >= 7:
                wait_until(lambda: dict(node.pubsub_shardnumsub(channel)).get(channel.encode(), 0) >= 1, 10,
                           "the hub did not SSUBSCRIBE on the owning shard")
                sharded = dict(node.pubsub_shardnumsub(channel)).get(channel.encode(), 0)
                plain = dict(node.pubsub_numsub(channel)).get(channel.encode(), 0)
                assert (sharded, plain) == (1, 0)
            else:  # Redis 6.2 has no sharded pub/sub: the hub falls back to a plain subscription
                wait_until(lambda: dict(node.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1, 10,
                           "the hub did not SUBSCRIBE to the live channel")
        backend = RealtimeBackend(redis_url=redis_cluster.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
        lms = SimulatedLMS(seed=31)
        token = hub.token()

        async def scenario() -> tuple[list[str | None], list[dict]]:
            ws = await ws_connect(hub.ws, token)
            cursors = [backend.send(lms.next_event()) for _ in range(20)]
            frames = await collect(ws, 20)
            await ws.close()
            return cursors, frames

        cursors, frames = asyncio.run(scenario())
        backend.close()
        assert None not in cursors
        assert [frame["cursor"] for frame in frames] == cursors
    finally:
        hub.stop()


def _plain_subscribers(cluster: RedisCluster, channel: str) -> int:
    """Plain (not sharded) subscriptions to `channel` over every node of the cluster."""
    total = 0
    with cluster.client() as clients:
        for node in clients.get_nodes():
            with redis.Redis(host=node.host, port=node.port) as client:
                total += dict(client.pubsub_numsub(channel)).get(channel.encode(), 0)
    return total


def test_plain_pubsub_still_works_on_a_cluster_as_on_redis_6(redis_cluster: RedisCluster, prefix: str) -> None:
    """Redis 6.2 clusters have no sharded pub/sub: the plain path must carry the live feed there."""
    settings = Settings.from_env(redis_url=redis_cluster.url, redis_prefix=prefix)
    writer = StreamWriter(connect(discover(redis_cluster.url)), settings, sharded=False)
    lms = SimulatedLMS(seed=32)

    async def scenario() -> tuple[list[str], list[str | None]]:
        broker = RedisBroker(redis_client(redis_cluster.url), settings, sharded=False)
        live = broker.live()
        first = asyncio.ensure_future(anext(live))
        channel = keys.live_channel(settings)
        await async_wait_until(lambda: _plain_subscribers(redis_cluster, channel) >= 1, 10,
                               "the broker never subscribed to the live channel")
        cursors = [await asyncio.to_thread(writer.write, normalise(lms.next_event())) for _ in range(5)]
        seen = [(await asyncio.wait_for(first, 5)).cursor]
        seen += [(await asyncio.wait_for(anext(live), 5)).cursor for _ in range(4)]
        await live.aclose()
        await broker.close()
        return cursors, seen

    cursors, seen = asyncio.run(scenario())
    assert seen == cursors


def test_the_plugin_filter_reads_grants_from_the_cluster(redis_cluster: RedisCluster, prefix: str) -> None:
    hub = HubProcess(redis_cluster.url, prefix)
    hub.start()
    try:
        hub.client(grant=[{"event_types": ["edx.video.play_video"]}])
        backend = RealtimeBackend(redis_url=redis_cluster.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
        lms = SimulatedLMS(seed=33)
        deadline = time.monotonic() + 10
        while backend.counts["unwanted"] == 0:
            assert time.monotonic() < deadline, "the preemptive filter never dropped an unwanted event"
            backend.send(lms.next_event())
            time.sleep(0.01)  # pacing
        backend.close()
    finally:
        hub.stop()


def test_deleting_a_client_removes_its_registry_entries_and_its_own_keys(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    settings = Settings.from_env(redis_url=redis_cluster.url, redis_prefix=prefix)

    async def scenario() -> tuple[str, list[int]]:
        redis = redis_client(redis_cluster.url)
        registry = ClientRegistry(redis, settings)
        client, _ = await registry.create(name="gone", type="other", translator="xapi", grant=[{}])
        await redis.xadd(keys.outbox(settings, client.client_id), {"b": "{}"}, id="1-1")
        await redis.xadd(keys.deadletters(settings, client.client_id), {"cursor": "1-1", "body": "{}"})
        await registry.delete(client.client_id)
        left = [
            await redis.exists(key)
            for key in [keys.client_key(settings, client.client_id), *keys.client_keys(settings, client.client_id)]
        ]
        left.append(int(await redis.sismember(keys.clients_key(settings), client.client_id)))
        left.append(int(await redis.hexists(keys.active_grants_key(settings), client.client_id)))
        await redis.aclose()
        return client.client_id, left

    _, left = asyncio.run(scenario())
    assert left == [0] * len(left)


@pytest.mark.slow
def test_the_admin_command_counts_live_sockets_kept_on_the_clients_shards(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    hub = HubProcess(redis_cluster.url, prefix)
    hub.start()
    try:
        client_id, secret = hub.client()
        token = hub.token_for(client_id, secret)

        async def scenario() -> list[int]:
            sockets = [await ws_connect(hub.ws, token) for _ in range(2)]
            counts: list[int] = []
            deadline = time.monotonic() + 15  # the second socket is counted at the next refresh (5 s)
            while 2 not in counts and time.monotonic() < deadline:
                shown = await asyncio.to_thread(_rthub, redis_cluster, prefix, "clients", "show", client_id, "--json")
                assert shown.returncode == 0, shown.stderr
                counts.append(json.loads(shown.stdout)["live_connections"])
            for ws in sockets:
                await ws.close()
            return counts

        counts = asyncio.run(scenario())
    finally:
        hub.stop()
    assert counts[0] >= 1 and counts[-1] == 2, counts
