from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import seeded  # noqa: F401  (loads the suite's Hypothesis profile)
from tests.authserver import auth_server, auth_settings  # noqa: F401  (fixtures for auth and admin tests)
from tests.hubproc import Hub, HubProcess, InProcessHub
from tests.servers import RedisCluster, RedisSentinel, RedisServer

# Fixtures that start a real peer (a Ralph LRS, a browser page): a test asking for one is marked `peers`.
PEER_FIXTURES = frozenset({"ralph", "page"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Key files go where rthub puts them by default (`$XDG_DATA_HOME/rthub`), in a directory of this run
    instead of the user's: every hub, CLI and registry of a test shares it, as on one machine."""
    home = tmp_path_factory.mktemp("xdg-data")
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(home)
    yield home
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole run; tests isolate themselves by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A three-master Redis Cluster for the whole run, started only when a test asks for it."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def any_redis(request: pytest.FixtureRequest) -> RedisServer | RedisCluster:
    """The main end-to-end tests run on one redis-server and on a three-master Redis Cluster; both are
    named by a plain `redis://` URL to one node, as an operator would give it."""
    return request.getfixturevalue("redis_server" if request.param == "single" else "redis_cluster")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    """A master, a replica and a Sentinel for one test, which may kill the master."""
    watched = RedisSentinel(tmp_path / "sentinel")
    try:
        watched.start()
        yield watched
    finally:
        watched.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone, for tests that stop or restart it."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A Redis key prefix unique to the test, so tests sharing a server never see each other's keys."""
    return f"t:{request.node.name}:"


@pytest.fixture
def hub(request: pytest.FixtureRequest, redis_server: RedisServer, prefix: str) -> Iterator[Hub]:
    """A real hub on a free port, on this test's key prefix; `hub.token()` issues OAuth clients.

    In this process (`InProcessHub`), unless the test is marked `hub_process`: then `rthub serve` in a
    subprocess (`HubProcess`), which the test may stop, kill and restart.
    """
    kind = HubProcess if request.node.get_closest_marker("hub_process") else InProcessHub
    started = kind(redis_server.url, prefix)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def token(hub: Hub) -> str:
    """A bearer token for a client that may see every event, translated to xAPI."""
    return hub.token()
