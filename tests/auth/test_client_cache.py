"""The token endpoint's client-record cache never outlives the contract: a revocation or a rotation made
by another process takes effect across it (change notices at once, one second at the latest)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from auth.client_cache import MAX_AGE, ClientCache
from auth.registry import ClientRegistry
from hub.app import create_app
from hub.config import Settings
from hub.control.changes import ChangeFollower
from tests.authserver import AuthServer, serve
from tests.hub.admin.test_cli import rthub
from tests.servers import free_port
from tests.waiting import async_wait_until

TOKEN = {"grant_type": "client_credentials"}


@pytest.fixture
def hub(auth_server: AuthServer) -> Iterator[httpx.Client]:
    """The real hub app (its `ChangeFollower` drops cached records), beside the fixture's auth server."""
    port = free_port()
    settings = auth_server.settings.with_overrides(issuer=f"http://127.0.0.1:{port}")
    server, thread = serve(create_app(settings), port)
    with httpx.Client(base_url=settings.issuer, timeout=10) as http:
        yield http
    server.should_exit = True
    thread.join(timeout=10)


def refused_after(http: httpx.Client, client_id: str, secret: str, since: float) -> float:
    """Ask for tokens until one is refused (401); how long after `since` that request was sent."""
    while True:
        sent = time.monotonic()
        response = http.post("/oauth/token", data=TOKEN, auth=(client_id, secret))
        if response.status_code == 401:
            return sent - since
        assert response.status_code == 200, response.text
        assert sent - since <= MAX_AGE, "a token was issued more than a second after the revocation"


def test_revocation_by_another_process_refuses_tokens_within_the_second(
    auth_server: AuthServer, hub: httpx.Client
) -> None:
    client_id, secret = auth_server.create()
    for _ in range(3):  # the record is now kept by the hub's token endpoint
        assert hub.post("/oauth/token", data=TOKEN, auth=(client_id, secret)).status_code == 200
    assert rthub(auth_server.settings, "clients", "revoke", client_id).returncode == 0
    refused_after(hub, client_id, secret, time.monotonic())


def test_revocation_without_change_notices_still_takes_effect_within_the_second(auth_server: AuthServer) -> None:
    """The fixture's token endpoint follows no change notices: its records expire on their own."""
    client_id, secret = auth_server.create()
    for _ in range(3):
        auth_server.token(client_id, secret)
    assert rthub(auth_server.settings, "clients", "revoke", client_id).returncode == 0
    assert refused_after(auth_server.http, client_id, secret, time.monotonic()) <= MAX_AGE


@pytest.mark.parametrize("notices", [True, False], ids=["hub", "no-notices"])
def test_a_secret_rotated_by_another_process_works_at_once(
    auth_server: AuthServer, hub: httpx.Client, notices: bool
) -> None:
    http = hub if notices else auth_server.http
    client_id, old = auth_server.create()
    for _ in range(3):
        assert http.post("/oauth/token", data=TOKEN, auth=(client_id, old)).status_code == 200
    rotated = rthub(auth_server.settings, "clients", "rotate-secret", client_id, "--json")
    new = json.loads(rotated.stdout)["client_secret"]
    response = http.post("/oauth/token", data=TOKEN, auth=(client_id, new))
    assert response.status_code == 200, response.text


def test_a_change_notice_drops_the_kept_record_at_once(auth_settings: Settings) -> None:
    """With records that would otherwise be kept for an hour, only the notice can make the revocation seen."""
    asyncio.run(_notice_drops_the_kept_record(auth_settings))


async def _notice_drops_the_kept_record(auth_settings: Settings) -> None:
    redis = aioredis.Redis.from_url(auth_settings.redis_url)
    registry = ClientRegistry(redis, auth_settings)
    cache = ClientCache(registry, max_age=3600)
    follower = ChangeFollower(redis, auth_settings)
    subscribed = asyncio.Event()

    async def resync() -> None:
        await cache.clear()
        subscribed.set()

    follower.register(cache.forget, resync)
    try:
        client, _ = await registry.create(name="kept", type="other", translator="xapi")
        follower.start()
        await asyncio.wait_for(subscribed.wait(), 20)
        await cache.read(client.client_id)
        assert (await cache.get(client.client_id))[1]  # kept
        revoked = await asyncio.to_thread(rthub, auth_settings, "clients", "revoke", client.client_id)
        assert revoked.returncode == 0, revoked.stderr

        async def seen() -> bool:
            found, _ = await cache.get(client.client_id)
            return found is not None and not found.active

        await async_wait_until(seen, message="the revocation's notice never reached the cache")
    finally:
        await follower.close()
        await redis.aclose()
