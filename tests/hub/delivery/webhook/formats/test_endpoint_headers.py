"""Extra endpoint headers: sent on every POST (and by `rthub doctor`), encrypted at rest, never shown back."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio as aioredis

from tests.hub.delivery.webhook.formats.helpers import (
    HUB_ENV,
    admin_page,
    admin_token,
    api,
    publish_twice,
    rthub,
    wait_for,
)
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.servers import RedisServer

GATEWAY_KEY = "gw-key-5b1e0c9d7f"  # the value that must never come back or sit in Redis in clear
TENANT = "tenant-42"


@pytest.fixture
def hub(redis_server: RedisServer, prefix: str):  # type: ignore[no-untyped-def]
    process = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    process.start()
    yield process
    process.stop()


def redis_plaintext(hub: HubProcess, secret: str) -> list[str]:
    """Every key under the hub's prefix whose value (any type) holds `secret` in clear."""

    async def scan() -> list[str]:
        redis = aioredis.Redis.from_url(hub.redis_url)
        found = []
        try:
            async for key in redis.scan_iter(match=f"{hub.prefix}*"):
                kind = (await redis.type(key)).decode()
                if kind == "hash":
                    value = json.dumps({k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()})
                elif kind == "string":
                    value = (await redis.get(key)).decode(errors="replace")
                elif kind == "stream":
                    value = repr(await redis.xrange(key))
                elif kind == "list":
                    value = repr(await redis.lrange(key, 0, -1))
                else:
                    value = repr(await redis.smembers(key)) if kind == "set" else ""
                if secret in value:
                    found.append(key.decode())
        finally:
            await redis.aclose()
        return found

    return asyncio.run(scan())


def test_caliper_endpoint_gets_the_headers_on_every_post_and_nothing_shows_their_values(hub: HubProcess) -> None:
    token = admin_token(hub)
    with Receiver() as receiver:
        created = api(hub, token, "POST", "/clients", json={
            "name": "Caliper behind a gateway", "type": "university", "translator": "caliper",
            "delivery": "caliper-endpoint", "endpoint_url": receiver.url, "endpoint_token": "caliper-key",
            "endpoint_headers": {"X-Api-Key": GATEWAY_KEY, "X-Tenant": TENANT}, "grant": [{}],
            "webhook_batch_max": 5, "webhook_batch_wait": 0.1,
        })
        assert created.status_code == 201, created.text
        client_id = created.json()["client_id"]
        publish_twice(hub, 12, seed=7)
        wait_for(lambda: len(receiver.requests) >= 2, 30, "deliveries at the Caliper endpoint")
        requests = list(receiver.requests)
        shown = [created.text, api(hub, token, "GET", f"/clients/{client_id}").text,
                 api(hub, token, "GET", "/clients").text, admin_page(hub, f"/clients/{client_id}")]
    for request in requests:
        assert request.headers["x-api-key"] == GATEWAY_KEY and request.headers["x-tenant"] == TENANT
        assert request.headers["authorization"] == "Bearer caliper-key"  # rthub's own headers unchanged
        assert request.headers["content-type"] == "application/json"
    assert created.json()["endpoint_header_names"] == ["X-Api-Key", "X-Tenant"]
    for text in shown:
        assert GATEWAY_KEY not in text and TENANT not in text
    assert "X-Api-Key" in shown[-1]  # the page names the headers
    assert redis_plaintext(hub, GATEWAY_KEY) == [] and redis_plaintext(hub, TENANT) == []


def test_lrs_headers_from_the_cli_reach_posts_and_the_doctor_and_the_backup_keeps_them_encrypted(
    hub: HubProcess, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    with Receiver() as lrs:
        created = rthub(
            hub, "clients", "create", "--name", "LRS behind a gateway", "--type", "enterprise", "--translator", "xapi",
            "--delivery", "lrs", "--endpoint-url", lrs.url + "/", "--endpoint-username", "hub",
            "--endpoint-password", "pw", "--endpoint-header", f"X-Api-Key: {GATEWAY_KEY}",
            "--endpoint-header", f"X-Tenant:{TENANT}", "--grant", "{}", "--json",
        )
        assert created.returncode == 0, created.stderr
        client_id = json.loads(created.stdout)["client_id"]
        publish_twice(hub, 5, seed=3)
        wait_for(lambda: any(r.path == "/hook/statements" for r in lrs.requests), 30, "a POST to the LRS")
        doctor = rthub(hub, "doctor", "--json")
        requests = list(lrs.requests)
        shown = rthub(hub, "clients", "show", client_id)
        backup = tmp_path / "registry.jsonl"
        exported = rthub(hub, "admin", "export", str(backup))
    assert exported.returncode == 0, exported.stderr
    posts = [r for r in requests if r.path == "/hook/statements"]
    reads = [r for r in requests if r.path.startswith(("/hook/about", "/hook/statements?"))]
    assert posts and len(reads) == 2, (doctor.stdout, [r.path for r in requests])
    for request in posts + reads:
        assert request.headers["x-api-key"] == GATEWAY_KEY and request.headers["x-tenant"] == TENANT
    assert all(r.headers["x-experience-api-version"] == "1.0.3" for r in posts + reads)
    for output in (created.stdout + created.stderr, shown.stdout, doctor.stdout):
        assert GATEWAY_KEY not in output and TENANT not in output
    assert 'endpoint_header_names: ["X-Api-Key", "X-Tenant"]' in shown.stdout
    text = backup.read_text()
    assert GATEWAY_KEY not in text and TENANT not in text
    record = next(json.loads(line)["client"]["record"] for line in text.splitlines() if client_id in line)
    assert record["endpoint_headers"].startswith("gAAAAA") and record["endpoint_header_names"] == "X-Api-Key X-Tenant"

    # Cleared from the CLI: the next POSTs carry none.
    with Receiver() as lrs:
        assert rthub(hub, "clients", "update", client_id, "--endpoint-url", lrs.url + "/",
                     "--clear-endpoint-headers").returncode == 0
        publish_twice(hub, 3, seed=4)
        wait_for(lambda: any(r.path == "/hook/statements" for r in lrs.requests), 30, "a POST without the headers")
        time.sleep(0.2)
        assert all("x-api-key" not in r.headers for r in lrs.requests)


@pytest.mark.parametrize(
    "header",
    ["Authorization: Basic eA==", "content-type: text/plain", "Content-Length: 3", "Host: evil.example",
     "webhook-signature: v1,x", "X-Experience-API-Version: 2.0", "Bad Header: x", "NoColon", "X-Line: a\x7fb"],
)
def test_headers_rthub_sets_or_malformed_ones_are_refused_by_cli_and_api(hub: HubProcess, header: str) -> None:
    done = rthub(hub, "clients", "create", "--name", "x", "--type", "other", "--translator", "xapi",
                 "--delivery", "lrs", "--endpoint-url", "https://lrs.example/xAPI/", "--endpoint-token", "t",
                 "--endpoint-header", header)
    assert done.returncode == 2 and "invalid endpoint_headers" in done.stderr, done.stderr
    response = api(hub, admin_token(hub), "POST", "/clients", json={
        "name": "x", "type": "other", "translator": "xapi", "delivery": "lrs",
        "endpoint_url": "https://lrs.example/xAPI/", "endpoint_token": "t", "endpoint_headers": [header],
    })
    assert response.status_code == 422 and response.json()["field"] == "endpoint_headers", response.text


def test_endpoint_headers_are_refused_for_webhook_delivery_and_set_from_the_page(hub: HubProcess) -> None:
    token = admin_token(hub)
    refused = api(hub, token, "POST", "/clients", json={
        "name": "hooks", "type": "other", "translator": "xapi", "delivery": "webhook",
        "webhook_url": "https://consumer.example/hook", "endpoint_headers": {"X-Api-Key": "k"},
    })
    assert refused.status_code == 422 and refused.json()["field"] == "endpoint_headers"
    created = api(hub, token, "POST", "/clients", json={
        "name": "lrs", "type": "other", "translator": "xapi", "delivery": "lrs",
        "endpoint_url": "https://lrs.example/xAPI/", "endpoint_token": "t",
    })
    client_id = created.json()["client_id"]
    form = {"name": "lrs", "type": "other", "translator": "xapi", "delivery": "lrs",
            "endpoint_url": "https://lrs.example/xAPI/",
            "endpoint_headers": f"X-Api-Key: {GATEWAY_KEY}\nX-Tenant: {TENANT}\n"}
    page = admin_page(hub, f"/clients/{client_id}", form)
    assert "Saved." in page and GATEWAY_KEY not in page
    shown = api(hub, token, "GET", f"/clients/{client_id}").json()
    assert shown["endpoint_header_names"] == ["X-Api-Key", "X-Tenant"] and GATEWAY_KEY not in json.dumps(shown)
    assert redis_plaintext(hub, GATEWAY_KEY) == []
