"""The Redis layout other components read, change notices, secrets at rest and live connection counts."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from auth.clients import ValidationError
from auth.passwords import hash_secret, verify_secret
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.control.presence import Presence, live_connections
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from rthub_lms import keys as rkeys
from tests.authserver import in_loop
from tests.servers import RedisServer


@pytest.fixture
def settings(redis_server: RedisServer, prefix: str) -> Settings:
    return Settings(redis_url=redis_server.url, redis_prefix=prefix, secret_grace_period=60)


def test_layout_and_change_notices(settings: Settings) -> None:
    sync = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    pubsub = sync.pubsub()
    pubsub.subscribe(rkeys.changes_channel(settings))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"

    grant = [{"courses": ["course-v1:MITx+6.002x+*"], "event_types": ["edx.video.*", "problem_check"]}]

    async def create(registry: ClientRegistry):
        return await registry.create(
            name="Acme",
            type="enterprise",
            translator="caliper",
            grant=grant,
            delivery="websocket+webhook",
            webhook_url="https://hooks.acme.example/rthub",
        )

    client, secret = in_loop(settings, create)
    assert sync.smembers(rkeys.clients_key(settings)) == {client.client_id}
    stored = sync.hgetall(rkeys.client_key(settings, client.client_id))
    assert stored["name"] == "Acme"
    assert stored["type"] == "enterprise"
    assert stored["scopes"] == "events:read"
    assert stored["translator"] == "caliper"
    assert stored["delivery"] == "websocket+webhook"
    assert stored["webhook_url"] == "https://hooks.acme.example/rthub"
    assert stored["webhook_secret"].startswith("whsec_")
    assert stored["status"] == "active"
    assert json.loads(stored["grant"]) == grant
    assert stored["secret_hash"].startswith("sha256$") and secret not in stored["secret_hash"]
    assert secret not in json.dumps(stored)
    assert stored["previous_secret_hash"] == "" and stored["previous_secret_expires"] == "0"
    assert stored["created_at"].endswith("+00:00") and stored["updated_at"] == stored["created_at"]

    in_loop(settings, lambda registry: registry.update(client.client_id, translator="xapi"))
    in_loop(settings, lambda registry: registry.rotate_secret(client.client_id))
    in_loop(settings, lambda registry: registry.revoke(client.client_id))
    notices = []
    deadline = time.monotonic() + 3
    while len(notices) < 4 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            notices.append(message["data"])
    assert notices == [client.client_id] * 4
    rotated = sync.hgetall(rkeys.client_key(settings, client.client_id))
    assert rotated["previous_secret_hash"] == stored["secret_hash"]
    assert int(rotated["previous_secret_expires"]) == pytest.approx(time.time() + 60, abs=5)
    assert rotated["status"] == "revoked"
    pubsub.close()


def test_identity_is_none_when_missing_or_revoked(settings: Settings) -> None:
    client, _ = in_loop(settings, lambda r: r.create(name="x", type="university", translator="xapi"))
    identity = in_loop(settings, lambda r: r.identity(client.client_id))
    assert identity is not None
    assert (identity.client_id, identity.consumer_type, identity.translator, identity.delivery) == (
        client.client_id,
        "university",
        "xapi",
        "websocket",
    )
    assert in_loop(settings, lambda r: r.identity("cl_missing")) is None
    in_loop(settings, lambda r: r.revoke(client.client_id))
    assert in_loop(settings, lambda r: r.identity(client.client_id)) is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"translator": "tincan"}, "translator"),
        ({"type": "robot"}, "type"),
        ({"delivery": "pigeon"}, "delivery"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"webhook_url": "ftp://x.example/"}, "webhook_url"),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url"),
        ({"delivery": "webhook"}, "webhook_url"),
        ({"grant": "{not json"}, "grant"),
        ({"grant": [{"courses": "course-v1:x"}]}, "grant[0].courses"),
        ({"grant": [{"colour": ["blue"]}]}, "grant[0].colour"),
        ({"grant": {"courses": []}}, "grant[0].courses"),
        ({"scopes": ["superuser"]}, "scopes"),
        ({"name": ""}, "name"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_input_names_the_field(settings: Settings, values: dict, field: str) -> None:
    fields = {"name": "n", "type": "other", "translator": "xapi", **values}
    with pytest.raises(ValidationError) as caught:
        in_loop(settings, lambda r: r.create(**fields))
    assert caught.value.field == field


def test_secret_hash_is_prefixed_and_checked(settings: Settings) -> None:
    encoded = hash_secret("s3cret")
    assert encoded.startswith("sha256$") and "s3cret" not in encoded
    assert verify_secret("s3cret", encoded)
    assert not verify_secret("s3cret!", encoded)
    assert not verify_secret("s3cret", "garbage")
    assert not verify_secret("s3cret", "md5$" + encoded.partition("$")[2]), "unknown schemes never match"


def test_live_connections_sum_over_instances(settings: Settings) -> None:
    """Counts come from the presence record each instance refreshes; an expired instance counts for nothing."""

    async def count(registry: ClientRegistry) -> dict[str, int]:
        tip = RedisBroker(registry.redis, settings).tip
        hub_a = Presence(registry.redis, settings, tip=tip, instance="hub-a")
        hub_b = Presence(registry.redis, settings, tip=tip, instance="hub-b")
        stale = Presence(registry.redis, settings, tip=tip, instance="hub-stale", ttl_ms=200)
        for _ in range(2):
            await hub_a.connected("cl_1")
        await hub_a.connected("cl_2")
        for _ in range(3):
            await hub_b.connected("cl_1")
        await stale.connected("cl_3")
        await hub_a.refresh()
        await hub_b.refresh()
        await asyncio.sleep(0.3)  # time passing: the stale instance's 200 ms ttl runs out
        counted = await live_connections(registry.redis, settings, ["cl_1", "cl_2", "cl_3", "cl_none"])
        await hub_a.disconnected("cl_2", None)
        after = await live_connections(registry.redis, settings, ["cl_1", "cl_2"])
        return {"counted": counted, "after": after}

    assert in_loop(settings, count) == {"counted": {"cl_1": 5, "cl_2": 1}, "after": {"cl_1": 5}}


@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_rebuilding_the_grants_projection_never_erases_a_client_saved_meanwhile(
    backend: str, redis_server: RedisServer, request: pytest.FixtureRequest, prefix: str
) -> None:
    """Hub starts (each rebuilds the projection) racing `create`: every active client stays in it.

    The LMS-side filter reads only this projection, so a client missing from it has its events
    dropped before they reach Redis.
    """
    url = redis_server.url if backend == "single" else request.getfixturevalue("redis_cluster").url
    settings = Settings(redis_url=url, redis_prefix=prefix)

    async def race(registry: ClientRegistry) -> tuple[set[str], set[str]]:
        async def create(index: int) -> str:
            client, _ = await registry.create(name=f"c{index}", type="other", translator="xapi",
                                              grant=[{"courses": [f"course-v1:X+C{index}+1"]}])
            return client.client_id

        created: set[str] = set()
        for index in range(60):  # each round, a rebuild and a create interleave on one event loop
            _, client_id = await asyncio.gather(registry.sync_active_grants(), create(index))
            created.add(client_id)
        projected = {key.decode() if isinstance(key, bytes) else key
                     for key in await registry.redis.hkeys(rkeys.active_grants_key(settings))}
        return created, projected

    async def go() -> tuple[set[str], set[str]]:
        client = redis_client(url)
        try:
            return await race(ClientRegistry(client, settings))
        finally:
            await client.aclose()

    created, projected = asyncio.run(go())
    assert len(created) == 60
    assert projected == created


@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_every_change_that_sends_a_notice_moves_the_interest_version_first(
    backend: str, redis_server: RedisServer, request: pytest.FixtureRequest, prefix: str
) -> None:
    """The plug-in's filter drops an event only when the interest version has not moved since it loaded the
    grants: every write that sends a change notice must have moved it by the time it is answered (in its
    own transaction, so in the registry's slot on a cluster too)."""
    url = redis_server.url if backend == "single" else request.getfixturevalue("redis_cluster").url
    settings = Settings(redis_url=url, redis_prefix=prefix)

    async def writes(registry: ClientRegistry) -> list[tuple[str, int]]:
        key = rkeys.interest_version_key(settings)

        async def version() -> int:
            return int(await registry.redis.get(key) or 0)

        seen = [("start", await version())]
        client, _ = await registry.create(name="c", type="other", translator="xapi", grant=[{"orgs": ["MITx"]}],
                                          delivery="webhook", webhook_url="https://hooks.example.com/x")
        seen.append(("create", await version()))
        changes = {
            "update": lambda: registry.update(client.client_id, grant=[{"orgs": ["MITx", "HarvardX"]}]),
            "rotate_secret": lambda: registry.rotate_secret(client.client_id),
            "pause": lambda: registry.pause_endpoint(client.client_id, "401"),
            "disable": lambda: registry.disable_webhooks(client.client_id, "410"),
            "enable": lambda: registry.enable_webhooks(client.client_id),
            "revoke": lambda: registry.revoke(client.client_id),
            "sync": registry.sync_active_grants,
            "delete": lambda: registry.delete(client.client_id),
        }
        for name, change in changes.items():
            await change()
            seen.append((name, await version()))
        return seen

    async def go() -> list[tuple[str, int]]:
        client = redis_client(url)
        try:
            return await writes(ClientRegistry(client, settings))
        finally:
            await client.aclose()

    seen = asyncio.run(go())
    assert [version for _, version in seen] == list(range(len(seen))), seen
