"""Redis settings that lose rthub's data silently are named at start, in `/readyz` and on `/metrics`, and
refused with `--strict-redis`: eviction, no persistence, replicas without `min-replicas-to-write`.
Each test starts redis-servers of its own; the session's shared one is never reconfigured."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.dev.embedded import free_port
from hub.redis import client as redis_client
from hub.redis_safety import Problem, redis_safety
from tests import ROOT
from tests.hubproc import InProcessHub
from tests.servers import RedisCluster, RedisServer
from tests.waiting import wait_until

UNSAFE = ("--maxmemory-policy", "allkeys-lru")  # and RedisServer's own `save ""`, `appendonly no`


@pytest.fixture
def unsafe_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "unsafe", extra=UNSAFE)
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def safe_redis(own_redis: RedisServer) -> RedisServer:
    """The suite's own redis-server for one test: AOF on, and noeviction is Redis's default."""
    return own_redis


def problems_of(url: str) -> list[Problem]:
    async def check() -> list[Problem]:
        client = redis_client(url)
        try:
            return await redis_safety(client)
        finally:
            await client.aclose()

    return asyncio.run(check())


def test_an_evicting_unpersisted_redis_is_named_at_start_in_readyz_and_on_metrics(
    unsafe_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = InProcessHub(unsafe_redis.url, prefix)
    with caplog.at_level(logging.WARNING, logger="rthub.app"):
        hub.start()
    try:
        warnings = [r.getMessage() for r in caplog.records if r.name == "rthub.app" and r.levelno == logging.WARNING]
        assert any("maxmemory-policy is allkeys-lru" in line and "noeviction" in line for line in warnings), warnings
        assert any("appendonly/save" in line and "no persistence" in line for line in warnings), warnings
        ready = httpx.get(f"{hub.http}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        detail = ready.json()["redis"]
        assert detail["safe"] is False
        assert {p["setting"]: p["found"] for p in detail["problems"]} == {
            "maxmemory-policy": "allkeys-lru", "appendonly/save": 'no/"" (no persistence)',
        }
        assert all(p["fix"] for p in detail["problems"])
        assert hub.metric("rthub_redis_unsafe") == 2
    finally:
        hub.stop()


def test_a_safe_redis_gives_no_warning_and_a_clean_detail(
    safe_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = InProcessHub(safe_redis.url, prefix)
    with caplog.at_level(logging.WARNING, logger="rthub.app"):
        hub.start()
    try:
        assert not [r for r in caplog.records if r.name == "rthub.app" and "Redis" in r.getMessage()]
        body = httpx.get(f"{hub.http}/readyz", timeout=5).json()
        assert body == {"ready": True, "redis": {"safe": True, "problems": []}}
        assert hub.metric("rthub_redis_unsafe") == 0
    finally:
        hub.stop()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_strict_redis_refuses_to_start_naming_the_settings(unsafe_redis: RedisServer, prefix: str, how: str) -> None:
    env = {**os.environ, "RTHUB_REDIS_URL": unsafe_redis.url, "RTHUB_REDIS_PREFIX": prefix}
    argv = [sys.executable, "-m", "hub.cli", "serve", "--port", "1"]
    if how == "flag":
        argv.append("--strict-redis")
    else:
        env["RTHUB_STRICT_REDIS"] = "true"
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "maxmemory-policy is allkeys-lru" in result.stderr and "appendonly/save" in result.stderr, result.stderr
    assert "fix:" in result.stderr


def test_strict_redis_starts_on_a_safe_redis(safe_redis: RedisServer, prefix: str) -> None:
    hub = InProcessHub(safe_redis.url, prefix, env={"RTHUB_STRICT_REDIS": "true"})
    hub.start()
    try:
        assert httpx.get(f"{hub.http}/readyz", timeout=5).json()["redis"]["safe"] is True
    finally:
        hub.stop()


def test_strict_redis_under_uvicorn_alone_refuses_in_the_lifespan(unsafe_redis: RedisServer, prefix: str) -> None:
    """`uvicorn --factory hub.app:create_app_from_env` has no `rthub serve` in front: the app refuses itself."""
    env = {**os.environ, "RTHUB_REDIS_URL": unsafe_redis.url, "RTHUB_REDIS_PREFIX": prefix,
           "RTHUB_STRICT_REDIS": "true"}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "hub.app:create_app_from_env", "--port", str(free_port())]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "maxmemory-policy is allkeys-lru" in result.stderr, result.stderr


def test_a_master_with_replicas_but_no_min_replicas_to_write_is_named(tmp_path: Path) -> None:
    master = RedisServer(tmp_path / "master", appendonly=True)
    master.start()
    replica = RedisServer(tmp_path / "replica", appendonly=True, extra=("--replicaof", "127.0.0.1", str(master.port)))
    try:
        assert problems_of(master.url) == []
        replica.start()
        wait_until(lambda: master.client().info("replication")["connected_slaves"] == 1, 20, "the replica attached")
        problems = problems_of(master.url)
        assert [(p.setting, p.found) for p in problems] == [("min-replicas-to-write", "0 with 1 replica(s) connected")]
        assert "min-replicas-to-write 1" in problems[0].fix
        master.client().config_set("min-replicas-to-write", 1)
        assert problems_of(master.url) == []
    finally:
        replica.stop(kill=True)
        master.stop(kill=True)


def test_a_redis_refusing_config_get_is_unknown_not_a_crash(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "managed", extra=("--rename-command", "CONFIG", ""))
    server.start()
    try:
        problems = problems_of(server.url)
    finally:
        server.stop(kill=True)
    assert [p.setting for p in problems] == ["maxmemory-policy", "appendonly/save"]
    assert all(p.found.startswith("unknown (CONFIG GET refused") and p.unknown for p in problems), problems
    assert "if it is unsafe" in problems[0].line()


def test_every_master_of_a_cluster_is_checked(redis_cluster: RedisCluster) -> None:
    problems = problems_of(redis_cluster.url)
    assert sorted(p.node for p in problems) == sorted(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes)
    assert {p.setting for p in problems} == {"appendonly/save"}, "the test cluster runs without persistence"
    assert all(p.line().startswith(f"Redis {p.node}: ") for p in problems)



@pytest.mark.parametrize("persistent", [False, True], ids=["without-its-data", "with-its-aof"])
def test_a_redis_restarted_without_its_data_is_reported_and_one_with_its_aof_is_not(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture, persistent: bool
) -> None:
    """The marker the hub wrote is gone after a restart of a Redis that kept nothing: an error names the
    loss and what to do, and `rthub_redis_data_lost_total` counts it. With its AOF, the same restart is
    only a reconnect."""
    server = RedisServer(tmp_path / "redis", appendonly=persistent)
    server.start()
    hub = InProcessHub(server.url, prefix)
    hub.start()
    try:
        marker = f"{prefix}{{registry}}:marker"
        wait_until(lambda: server.client().exists(marker), 10, "the hub wrote no marker")
        before = hub.metric("rthub_redis_data_lost_total")
        with caplog.at_level(logging.ERROR, logger="rthub.redis"):
            server.restart()
            # the change follower resubscribes, then checks the marker (and writes a new one after a loss)
            changes = f"{prefix}{{registry}}:changes"
            wait_until(lambda: dict(server.client().pubsub_numsub(changes)).get(changes.encode()), 30,
                       "the change follower did not resubscribe")
            wait_until(lambda: server.client().exists(marker), 30, "the hub did not check after reconnecting")
            time.sleep(0.5)  # a window: the check runs at once after the resubscribe; a loss would be counted now
            after = hub.metric("rthub_redis_data_lost_total")
        lost = [r.getMessage() for r in caplog.records if r.name == "rthub.redis" and r.levelno == logging.ERROR]
    finally:
        hub.stop()
        server.stop(kill=True)
    assert before == 0
    if persistent:
        assert after == 0 and lost == []
    else:
        assert after == 1
        assert len(lost) == 1 and "Redis lost rthub's data" in lost[0] and "rthub admin import" in lost[0]
