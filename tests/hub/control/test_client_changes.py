"""Revoking a client, or changing its rights, cuts its live sockets within one second (close 4403)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets

from auth.registry import ClientRegistry
from hub.redis import client as redis_client
from tests.hubproc import HubProcess
from tests.servers import RedisCluster, RedisServer
from tests.wsclient import connect


@pytest.fixture
def hub(any_redis: RedisServer | RedisCluster, prefix: str) -> Iterator[HubProcess]:
    """A hub on one redis-server, then on a Redis Cluster."""
    process = HubProcess(any_redis.url, prefix)
    process.start()
    yield process
    process.stop()


def _with_registry(hub: HubProcess, work: Callable[[ClientRegistry], Awaitable[Any]]) -> None:
    async def run() -> None:
        redis = redis_client(hub.redis_url)
        try:
            await work(ClientRegistry(redis, hub.settings))
        finally:
            await redis.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.mark.parametrize(
    "change",
    [
        lambda registry, client_id: registry.revoke(client_id),
        lambda registry, client_id: registry.update(client_id, grant=[{"courses": ["course-v1:MITx+*"]}]),
        lambda registry, client_id: registry.update(client_id, translator="caliper"),
    ],
    ids=["revoked", "grant-changed", "translator-changed"],
)
def test_change_closes_live_sockets_within_one_second(
    hub: HubProcess, change: Callable[..., Awaitable[Any]]
) -> None:
    client_id, secret = hub.client()
    other_token = hub.token()
    token = hub.token_for(client_id, secret)

    async def scenario() -> tuple[int | None, float, bool]:
        sockets = [await connect(hub.ws, token) for _ in range(2)]
        bystander = await connect(hub.ws, other_token)
        started = time.monotonic()
        await asyncio.to_thread(_with_registry, hub, lambda registry: change(registry, client_id))
        codes = []
        for ws in sockets:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 1.0)
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        elapsed = time.monotonic() - started
        bystander_open = bystander.state == websockets.protocol.State.OPEN
        await bystander.close()
        assert len(set(codes)) == 1, codes
        return codes[0], elapsed, bystander_open

    code, elapsed, bystander_open = asyncio.run(scenario())
    assert code == 4403
    assert elapsed < 1.5, f"sockets closed after {elapsed:.2f}s"
    assert bystander_open


def test_revoked_client_cannot_reconnect(hub: HubProcess) -> None:
    client_id, secret = hub.client()
    token = hub.token_for(client_id, secret)
    _with_registry(hub, lambda registry: registry.revoke(client_id))

    async def scenario() -> int | None:
        async with websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 4403
