"""How a real LRS's refusals are handled, with the router and worker in-process and Ralph for real."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.deadletters import list_deadletters
from hub.delivery.webhook.health import delivery_health, delivery_log
from hub.delivery.webhook.outbox import Outbox
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hub.delivery.webhook.helpers import router_on
from tests.servers import RedisServer
from tests.waiting import async_wait_until


def statement(verb: str = "experienced") -> dict:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "http://lms.example", "name": str(uuid.uuid4())}},
        "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}", "display": {"en": verb}},
        "object": {"objectType": "Activity", "id": "http://lms.example/xblock/block-v1:x+y+z+type@video+block@v"},
        "timestamp": "2026-11-29T10:00:00+00:00",
    }


async def queue_and_deliver(
    redis_url: str, prefix: str, ralph: RalphServer, key_file: Path, statements: list[dict], batch: int
) -> tuple[list[dict], list[dict], dict]:
    """Queue one frame per statement, run delivery until the queue is empty; (dead letters, log, health)."""
    redis = aioredis.Redis.from_url(redis_url)
    settings = Settings(
        redis_url=redis_url, redis_prefix=prefix, webhook_allow_private=True, webhook_retry_schedule=(0.1, 0.2),
        endpoint_key_file=str(key_file),
    )
    client, _ = await ClientRegistry(redis, settings).create(
        name="lrs", type="enterprise", translator="xapi", delivery="lrs", endpoint_url=ralph.endpoint,
        endpoint_username=ralph.username, endpoint_password=ralph.password, grant=[{}], webhook_batch_max=batch,
    )
    outbox = Outbox(redis, settings)
    for number, data in enumerate(statements, start=1):
        cursor = f"{number}-0"
        frame = orjson.dumps({"type": "event", "cursor": cursor, "event_type": "test", "data": data}).decode()
        await outbox.append([(cursor, client.client_id, frame)])
    router = router_on(redis, settings)
    await router.start()
    try:
        async def drained() -> bool:
            return not await outbox.head(client.client_id, 1)

        await async_wait_until(drained, 30, "the queue did not drain")
    finally:
        await router.close()
    dead = await list_deadletters(redis, settings, client.client_id)
    log = await delivery_log(redis, settings, client.client_id)
    health = (await delivery_health(redis, settings, [client.client_id]))[client.client_id]
    await redis.aclose()
    return dead, log, health


@pytest.mark.slow
def test_a_refused_statement_is_dead_lettered_with_the_lrs_message_and_the_rest_stored(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    statements = [statement() for _ in range(8)]
    del statements[5]["actor"]
    dead, log, health = asyncio.run(
        queue_and_deliver(redis_server.url, prefix, ralph, tmp_path / "endpoint.key", statements, 8)
    )
    stored = {s["id"] for s in ralph.statements()}
    assert stored == {s["id"] for i, s in enumerate(statements) if i != 5}
    assert [d["cursor"] for d in dead] == ["6-0"]
    assert dead[0]["reason"].startswith("HTTP 422") and "actor" in dead[0]["reason"]
    # 8 refused -> halves: 1-4 stored, 5-8 refused -> 5-6 refused -> 5 stored, 6 refused -> 7-8 stored
    assert [row["status"] for row in reversed(log)] == [422, 200, 422, 422, 200, 422, 200]
    assert health["delivered"] == 7 and health["dead_lettered"] == 1


@pytest.mark.slow
def test_a_conflicting_id_is_counted_as_stored_and_does_not_block(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    known = statement()
    response = httpx.post(
        f"{ralph.endpoint}statements", json=[known], auth=(ralph.username, ralph.password),
        headers={"X-Experience-API-Version": "1.0.3"},
    )
    assert response.status_code == 200
    after = statement("completed")
    conflicting = {**known, "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en": "answered"}}}
    dead, log, health = asyncio.run(
        queue_and_deliver(redis_server.url, prefix, ralph, tmp_path / "endpoint.key", [conflicting, after], 1)
    )
    assert dead == []
    assert [row["status"] for row in reversed(log)] == [409, 200]
    assert health["already_stored"] == 1 and health["delivered"] == 2
    assert {s["id"] for s in ralph.statements()} == {known["id"], after["id"]}
