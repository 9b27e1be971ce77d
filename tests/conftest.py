from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole run; tests isolate themselves by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


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
def hub(redis_server: RedisServer, prefix: str) -> Iterator[HubProcess]:
    """A real hub process on a free port, on this test's key prefix; `hub.token()` issues OAuth clients."""
    process = HubProcess(redis_server.url, prefix)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def token(hub: HubProcess) -> str:
    """A bearer token for a client that may see every event, translated to xAPI."""
    return hub.token()
