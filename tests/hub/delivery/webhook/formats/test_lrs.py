"""xAPI into a real LRS (Ralph) through a real hub: exactly once, LRS outages, refused credentials."""

from __future__ import annotations

import signal
import time

import pytest

from tests.hub.delivery.webhook.formats.helpers import (
    HUB_ENV,
    admin_page,
    admin_token,
    api,
    publish_twice,
    rendered,
    rthub,
    wait_for,
)
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hubproc import HubProcess
from tests.servers import RedisServer


@pytest.fixture
def hub(redis_server: RedisServer, prefix: str):  # type: ignore[no-untyped-def]
    process = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    process.start()
    yield process
    process.stop()


def create_lrs_client(hub: HubProcess, ralph: RalphServer, password: str) -> str:
    created = rthub(
        hub, "clients", "create", "--name", "Enterprise LRS", "--type", "enterprise", "--translator", "xapi",
        "--delivery", "lrs", "--endpoint-url", ralph.endpoint, "--endpoint-username", ralph.username,
        "--endpoint-password", password, "--batch-size", "20", "--batch-linger", "0.2", "--grant", "{}", "--json",
    )
    assert created.returncode == 0, created.stderr
    assert password not in created.stdout + created.stderr
    return created.stdout.split('"client_id": "')[1].split('"')[0]


def stored_once(ralph: RalphServer, expected: list[str]) -> None:
    """Wait until the LRS holds every expected statement, then check it holds each exactly once."""
    wait_for(lambda: len(ralph.statements()) >= len(expected), 60, f"{len(expected)} statements in the LRS")
    time.sleep(1.5)  # anything delivered twice would land now
    ids = [statement["id"] for statement in ralph.statements()]
    assert sorted(ids) == sorted(expected)


def health(hub: HubProcess, token: str, client_id: str) -> dict:
    response = api(hub, token, "GET", f"/clients/{client_id}")
    assert response.status_code == 200
    return response.json()


@pytest.mark.slow
def test_each_event_published_twice_is_stored_exactly_once(hub: HubProcess, ralph: RalphServer) -> None:
    client_id = create_lrs_client(hub, ralph, ralph.password)
    entries = publish_twice(hub, 40, seed=31)
    statements = rendered(hub, entries, "xapi", "enterprise")
    expected = [s["id"] for s in statements]
    assert len(expected) >= 30 and len(set(expected)) == len(expected)
    stored_once(ralph, expected)
    by_id = {s["id"]: s for s in ralph.statements()}
    for statement in statements:
        assert by_id[statement["id"]]["verb"] == statement["verb"]
        assert by_id[statement["id"]]["actor"] == statement["actor"]
    token = admin_token(hub)
    client = health(hub, token, client_id)
    assert client["delivery_status"] == "ok" and client["endpoint_credential_set"] is True
    assert "endpoint_credential" not in client and ralph.password not in str(client)
    wait_for(lambda: health(hub, token, client_id)["delivery_health"]["delivered"] == 2 * len(entries), 10,
             "both copies of every event acknowledged")
    assert health(hub, token, client_id)["delivery_health"]["dead_lettered"] == 0


@pytest.mark.slow
def test_lrs_down_then_up_loses_nothing(hub: HubProcess, ralph: RalphServer) -> None:
    create_lrs_client(hub, ralph, ralph.password)
    before = publish_twice(hub, 5, seed=32)
    wait_for(lambda: len(ralph.statements()) >= len(rendered(hub, before, "xapi", "enterprise")), 30, "first events")
    ralph.stop()
    during = publish_twice(hub, 20, seed=33)
    time.sleep(3)  # several failed attempts while the LRS is down
    ralph.start()
    expected = [s["id"] for s in rendered(hub, before + during, "xapi", "enterprise")]
    stored_once(ralph, expected)


@pytest.mark.slow
def test_wrong_password_pauses_visibly_and_loses_nothing_after_the_fix(hub: HubProcess, ralph: RalphServer) -> None:
    client_id = create_lrs_client(hub, ralph, "not-the-password")
    entries = publish_twice(hub, 15, seed=34)
    token = admin_token(hub)
    wait_for(lambda: health(hub, token, client_id)["delivery_status"] == "paused", 20, "the client to pause")
    client = health(hub, token, client_id)
    assert client["delivery_status_reason"].startswith("HTTP 401")
    attempts = api(hub, token, "GET", f"/clients/{client_id}/deliveries").json()["deliveries"]
    assert attempts and attempts[0]["status"] == 401 and attempts[0]["latency_ms"] >= 0
    time.sleep(2)  # paused: no more attempts, nothing dead-lettered
    assert len(api(hub, token, "GET", f"/clients/{client_id}/deliveries").json()["deliveries"]) == len(attempts)
    assert api(hub, token, "GET", f"/deadletters?client_id={client_id}").json()["deadletters"] == []
    page = admin_page(hub, f"/clients/{client_id}")
    assert "paused" in page and "HTTP 401" in page and 'id="delivery-log"' in page
    assert "not-the-password" not in page
    assert ralph.statements() == []

    fixed = rthub(hub, "clients", "rotate-endpoint-credential", client_id, "--endpoint-password", ralph.password)
    assert fixed.returncode == 0, fixed.stderr
    assert ralph.password not in fixed.stdout and "delivery_status: ok" in fixed.stdout
    stored_once(ralph, [s["id"] for s in rendered(hub, entries, "xapi", "enterprise")])
    assert health(hub, token, client_id)["delivery_status"] == "ok"


@pytest.mark.slow
def test_hub_sigterm_and_sigkill_lose_nothing_into_the_lrs(hub: HubProcess, ralph: RalphServer) -> None:
    """Events published while no hub runs, after a SIGTERM and after a SIGKILL, all reach the LRS once."""
    create_lrs_client(hub, ralph, ralph.password)
    entries = publish_twice(hub, 5, seed=35)
    hub.stop(signal.SIGTERM)
    entries += publish_twice(hub, 5, seed=36)  # no hub running
    hub.start()
    entries += publish_twice(hub, 5, seed=37)
    hub.stop(signal.SIGKILL)
    entries += publish_twice(hub, 5, seed=38)  # no hub running
    hub.start()
    stored_once(ralph, list(dict.fromkeys(s["id"] for s in rendered(hub, entries, "xapi", "enterprise"))))
