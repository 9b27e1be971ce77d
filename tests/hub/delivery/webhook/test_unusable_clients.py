"""A client whose webhook configuration is unusable is routed like every other: its events wait in its
outbox, the admin API, page and /metrics say `paused` with the reason, and once it is fixed every event
arrives. A real hub, a real receiver, the registry's own hash written with garbage."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from hub.config import Settings
from hub.delivery.webhook.signing import new_secret
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import (
    Publisher,
    router_on,
    settings_for,
    until,
    until_delivering,
    write_client,
)
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess, InProcessHub
from tests.servers import RedisServer
from tests.waiting import wait_until

ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5"}
EVENTS = 50


def _paused_metric(hub: InProcessHub, reason: str) -> float:
    text = httpx.get(f"{hub.http}/metrics", timeout=5).text
    found = re.search(rf'^rthub_webhook_clients_paused\{{reason="{reason}"\}} (\S+)$', text, re.MULTILINE)
    assert found, "rthub_webhook_clients_paused is missing from /metrics"
    return float(found.group(1))


def _signed_in_page(hub: InProcessHub, admin_id: str, admin_secret: str, path: str) -> str:
    """The admin page at `path`, rendered by the server for a signed-in admin."""
    with httpx.Client(base_url=f"{hub.http}/admin", follow_redirects=True, timeout=10) as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.get("/").text)
        assert csrf
        page.post("/login", data={"csrf": csrf.group(1), "client_id": admin_id, "client_secret": admin_secret})
        return page.get(path).text


def _delivered(receiver: Receiver) -> list[str]:
    """What arrived, in order: event cursors (webhook frames) or statement ids (an LRS)."""
    found: list[str] = []
    for request in receiver.requests:
        body = request.json
        found += [statement["id"] for statement in body] if isinstance(body, list) else [body["cursor"]]
    return found


CASES = {
    # the client's fields, the hash field broken with garbage, the reason shown, the metric's label
    "secret": ({"delivery": "webhook"}, "webhook_secret", "webhook secret unusable", "secret"),
    "credential": ({"delivery": "lrs", "endpoint_username": "hub", "endpoint_password": "pw"},
                   "endpoint_credential", "does not decrypt", "credential"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_client_with_an_unusable_configuration_is_paused_visibly_and_loses_nothing(
    redis_server: RedisServer, prefix: str, case: str
) -> None:
    fields, broken, reason, label = CASES[case]
    hub = InProcessHub(redis_server.url, prefix, env=ENV)
    hub.start()
    control = redis.Redis.from_url(redis_server.url)
    writer = StreamWriter(control, Settings(redis_url=redis_server.url, redis_prefix=prefix))
    lms = SimulatedLMS(seed=38)
    try:
        with Receiver() as receiver:
            url = {"endpoint_url": receiver.url} if "endpoint_username" in fields else {"webhook_url": receiver.url}
            client_id, _ = hub.client(**fields, **url)
            admin_id, admin_secret = hub.client(name="admin", scopes=["admin"], grant=[])
            api = httpx.Client(base_url=f"{hub.http}/admin/api", timeout=10,
                               headers={"Authorization": f"Bearer {hub.token_for(admin_id, admin_secret, 'admin')}"})
            until_delivering(hub, client_id)
            record = rkeys.client_key(hub.settings, client_id)
            control.hset(record, broken, "garbage")  # written straight into the registry's own hash
            control.publish(rkeys.changes_channel(hub.settings), client_id)
            wait_until(lambda: api.get(f"/clients/{client_id}").json()["delivery_status"] == "paused", 10,
                       "the API never said paused")
            shown = api.get(f"/clients/{client_id}").json()
            wait_until(lambda: _paused_metric(hub, label) == 1, 10, "/metrics never counted the pause")
            page = _signed_in_page(hub, admin_id, admin_secret, f"/clients/{client_id}")

            writer.write_many([normalise(lms.next_event()) for _ in range(EVENTS)])
            outbox = rkeys.outbox(hub.settings, client_id)
            wait_until(lambda: control.xlen(outbox) == EVENTS, 15, "the events were not held in the outbox")
            posted_while_paused = len(receiver.requests)

            if case == "secret":
                control.hset(record, "webhook_secret", new_secret())
                control.publish(rkeys.changes_channel(hub.settings), client_id)
            else:  # the operator re-enters the credential
                fixed = api.post(f"/clients/{client_id}/endpoint-credential", json={"endpoint_password": "pw"})
                fixed.raise_for_status()
            wait_until(lambda: len(set(_delivered(receiver))) == EVENTS, 20, "not every held event arrived")
            after_fix = api.get(f"/clients/{client_id}").json()["delivery_status"]
            paused_after_fix = _paused_metric(hub, label)
    finally:
        hub.stop()
        control.close()
    assert shown["webhook_status"] == "paused" and reason in shown["delivery_status_reason"]
    assert 'id="delivery-status"' in page and "paused" in page and reason in page
    assert posted_while_paused == 0
    delivered = _delivered(receiver)
    assert len(delivered) == len(set(delivered)) == EVENTS  # every held event, once
    assert (after_fix, paused_after_fix) == ("ok", 0)


def test_a_client_whose_grant_no_longer_compiles_is_held_then_caught_up_under_the_fixed_grant(
    redis_server: RedisServer, prefix: str
) -> None:
    """Its place in the stream is kept while the grant is broken (nothing is routed to it: the grant that
    would say what it may see is unknown) and routing moves on for everyone; once fixed it gets it all."""
    with Receiver() as receiver:

        async def scenario() -> tuple[int, list[str]]:
            redis_ = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis_, settings, "acme", receiver.url)
            await write_client(redis_, settings, "other", receiver.url + "/other")  # keeps routing busy
            router = router_on(redis_, settings)
            await router.start()
            router.follow()
            publisher = Publisher(redis_, settings)
            first = [entry.cursor for entry in await publisher.entries(5)]
            await until(lambda: len(_delivered_to(receiver, "/hook")) == 5)
            record = rkeys.client_key(settings, "acme")
            await redis_.hset(record, "grant", '[{"bogus": ["x"]}]')
            await redis_.publish(rkeys.changes_channel(settings), "acme")
            await until(lambda: router.paused()["grant"] == 1)
            held = [entry.cursor for entry in await publisher.entries(10)]
            await until(lambda: len(_delivered_to(receiver, "/hook/other")) == 15)  # routing moved on
            posted_while_held = len(_delivered_to(receiver, "/hook"))
            await redis_.hset(record, "grant", "[{}]")
            await redis_.publish(rkeys.changes_channel(settings), "acme")
            await until(lambda: len(_delivered_to(receiver, "/hook")) == 15)
            await router.close()
            await redis_.aclose()
            return posted_while_held, first + held

        posted_while_held, cursors = asyncio.run(scenario())
    assert posted_while_held == 5
    assert _delivered_to(receiver, "/hook") == cursors


def _delivered_to(receiver: Receiver, path: str) -> list[str]:
    return [request.json["cursor"] for request in list(receiver.requests) if request.path == path]


def test_a_paused_client_keeps_its_held_events_across_a_sigkill_of_the_hub_and_of_redis(tmp_path: Path) -> None:
    """Paused with 50 events held, then `rthub serve` and Redis (appendonly) are both SIGKILLed and started
    again: the client is still shown paused, nothing was posted, and once fixed every held event arrives once."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    prefix = "paused-kill:"
    hub = HubProcess(server.url, prefix, env=ENV)
    hub.start()
    control = redis.Redis.from_url(server.url)
    lms = SimulatedLMS(seed=39)
    try:
        with Receiver() as receiver:
            client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
            admin_id, admin_secret = hub.client(name="admin", scopes=["admin"], grant=[])

            def status() -> str:
                token = hub.token_for(admin_id, admin_secret, "admin")
                answer = httpx.get(f"{hub.http}/admin/api/clients/{client_id}", timeout=10,
                                   headers={"Authorization": f"Bearer {token}"})
                return str(answer.json()["delivery_status"])

            until_delivering(hub, client_id)
            record = rkeys.client_key(hub.settings, client_id)
            control.hset(record, "webhook_secret", "garbage")
            control.publish(rkeys.changes_channel(hub.settings), client_id)
            wait_until(lambda: status() == "paused", 10, "the API never said paused")
            StreamWriter(control, Settings(redis_url=server.url, redis_prefix=prefix)).write_many(
                [normalise(lms.next_event()) for _ in range(EVENTS)])
            outbox = rkeys.outbox(hub.settings, client_id)
            wait_until(lambda: control.xlen(outbox) == EVENTS, 15, "the events were not held in the outbox")

            hub.stop(signal.SIGKILL)
            control.close()
            server.stop(kill=True)
            server.start()
            control = redis.Redis.from_url(server.url)
            hub.start()
            assert control.xlen(outbox) == EVENTS
            wait_until(lambda: status() == "paused", 10, "not shown paused after the restarts")
            posted_while_paused = len(receiver.requests)

            control.hset(record, "webhook_secret", new_secret())
            control.publish(rkeys.changes_channel(hub.settings), client_id)
            wait_until(lambda: len(set(_delivered(receiver))) == EVENTS, 20, "not every held event arrived")
    finally:
        hub.stop()
        control.close()
        server.stop()
    assert posted_while_paused == 0
    delivered = _delivered(receiver)
    assert len(delivered) == len(set(delivered)) == EVENTS
