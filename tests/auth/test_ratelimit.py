"""Brute force on the token endpoint: failed client authentications are budgeted per client id and per
source address, in Redis, and a spent budget answers 429 with `Retry-After`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from auth.ratelimit import SharedReads
from hub.config import Settings
from rthub_lms import keys as rkeys
from tests.authserver import AuthServer
from tests.servers import RedisServer

GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def auth_settings(auth_settings: Settings) -> Settings:
    return replace(auth_settings, token_failure_limit=3, token_failure_ip_limit=8, token_failure_window=2)


def test_wrong_secrets_for_one_client_lock_it_out_with_retry_after(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    other_id, other_secret = auth_server.create()
    for _ in range(3):
        assert auth_server.http.post("/oauth/token", data=GRANT, auth=(client_id, "guess")).status_code == 401
    refused = auth_server.http.post("/oauth/token", data=GRANT, auth=(client_id, secret))
    assert refused.status_code == 429, "even the right secret: a lockout must not confirm a guess"
    assert 0 < int(refused.headers["retry-after"]) <= 2
    assert refused.json()["error"] == "too_many_requests"
    form = {**GRANT, "client_id": client_id, "client_secret": secret}
    assert auth_server.http.post("/oauth/token", data=form).status_code == 429, "same budget for client_secret_post"
    assert auth_server.token(other_id, other_secret), "other clients are not affected"
    stored = redis.Redis.from_url(auth_server.settings.redis_url)
    failures = rkeys.auth_failures(auth_server.settings, "client", client_id)
    assert stored.ttl(failures) > 0, "shared by every hub instance"
    time.sleep(2.2)  # time passing: the 2 s window runs out
    assert auth_server.token(client_id, secret), "the budget comes back after the window"


def test_failures_from_one_address_across_client_ids_lock_the_address_out(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    for n in range(8):
        response = auth_server.http.post("/oauth/token", data=GRANT, auth=(f"cl_unknown{n}", "guess"))
        assert response.status_code == 401
    refused = auth_server.http.post("/oauth/token", data=GRANT, auth=(client_id, secret))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    revoke = auth_server.http.post("/oauth/revoke", data={"token": "x"}, auth=(client_id, secret))
    assert revoke.status_code == 429, "the revocation endpoint authenticates clients too"


def test_successes_do_not_spend_the_budget(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    for _ in range(10):
        assert auth_server.token(client_id, secret)


def _admin_login(auth_server: AuthServer, client_id: str, secret: str) -> httpx.Response:
    page = auth_server.http.get("/admin/")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    return auth_server.http.post("/admin/login", data={"csrf": csrf, "client_id": client_id, "client_secret": secret})


def test_admin_sign_in_guessing_gets_429_and_shares_the_token_budget(auth_server: AuthServer) -> None:
    """30 wrong secrets on `/admin/login` used to be 30 times 401."""
    admin_id, admin_secret = auth_server.create(name="admin", type="other", scopes=["admin"])
    statuses = [_admin_login(auth_server, admin_id, f"guess-{n}").status_code for n in range(30)]
    assert statuses[:3] == [401] * 3 and set(statuses[3:]) == {429}, statuses
    refused = _admin_login(auth_server, admin_id, admin_secret)
    assert refused.status_code == 429, "even the right secret: a lockout must not confirm a guess"
    assert 0 < int(refused.headers["retry-after"]) <= 2
    assert "Too many failed sign-ins" in refused.text
    token = auth_server.http.post("/oauth/token", data=GRANT, auth=(admin_id, admin_secret))
    assert token.status_code == 429, "the token endpoint and the admin page spend one budget"
    time.sleep(2.2)  # time passing: the 2 s lockout runs out
    assert _admin_login(auth_server, admin_id, admin_secret).status_code == 303


def test_concurrent_reads_of_the_counters_share_round_trips_and_each_gets_its_own_values(
    own_redis: RedisServer, prefix: str
) -> None:
    """A burst of token requests reads the failure counters with fewer MGETs than requests, and every
    caller still gets the values of its own keys as Redis holds them (a Redis of its own: it counts MGETs)."""
    settings = Settings(redis_url=own_redis.url, redis_prefix=prefix)
    keys = [rkeys.auth_failures(settings, "client", f"cl_{n}") for n in range(8)]
    stored = redis.Redis.from_url(settings.redis_url)
    for n, key in enumerate(keys):
        stored.set(key, n)

    async def burst() -> list[list[bytes | None]]:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            reads = SharedReads(client)
            return await asyncio.gather(*(reads.get([key, keys[0]]) for key in keys))
        finally:
            await client.aclose()

    before = _mgets(stored)
    answers = asyncio.run(burst())
    assert answers == [[str(n).encode(), b"0"] for n in range(8)]
    assert _mgets(stored) - before < len(keys)


def _mgets(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))
