"""The admin page per client in a real headless Chromium against a real hub and real receivers: the dead
letters themselves and their replay (chosen, all, to a disabled endpoint), the queue, the next attempt
and "retry now", wording per delivery type (a real Ralph LRS), and confirmation before destructive acts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import ROOT, SEND_TIMEOUT
from tests.hub.admin.browser import needs_chromium
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hub.delivery.webhook.helpers import until_delivering, write_client
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import InProcessHub
from tests.servers import RedisServer
from tests.waiting import wait_until

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# One retry ten minutes away: only "retry now" makes it happen within the test.
ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "600"}

pytestmark = needs_chromium



@pytest.fixture
def hub(redis_server: RedisServer, prefix: str) -> Iterator[InProcessHub]:
    started = InProcessHub(redis_server.url, prefix, env=ENV)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def guarded_hub(redis_server: RedisServer, prefix: str) -> Iterator[InProcessHub]:
    """A hub retrying twice at once whose address guard refuses private addresses: every attempt is
    refused before any POST."""
    started = InProcessHub(redis_server.url, prefix, env={"RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.05,0.05"})
    started.start()
    yield started
    started.stop()


def _wait(predicate, timeout: float = 20, message: str = "condition not reached") -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, message)


def _sign_in(hub: InProcessHub, page) -> httpx.Client:  # type: ignore[no-untyped-def]
    """Sign in on the page as a new admin; returns an admin API client for checking what the page did."""
    admin_id, admin_secret = hub.client(name="Ops admin", scopes=["admin"], grant=[])
    page.goto(f"{hub.http}/admin/")
    page.fill("input[name=client_id]", admin_id)
    page.fill("input[name=client_secret]", admin_secret)
    page.click("button[type=submit]")
    token = hub.token_for(admin_id, admin_secret, scope="admin")
    return httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _publisher(hub: InProcessHub) -> RealtimeBackend:
    return RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)


def _screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_dead_letters_are_listed_and_replayed_and_a_waiting_retry_is_done_now(hub: InProcessHub, page) -> None:
    mode = {"reply": Reply(422, {"webhook-delivery": "abort-message"}, b"unknown course id")}
    with Receiver(lambda n: mode["reply"]) as receiver:
        client_id, _ = hub.client(name="Course analytics", delivery="webhook", webhook_url=receiver.url)
        until_delivering(hub, client_id)
        api = _sign_in(hub, page)
        lms = SimulatedLMS(seed=61)
        backend = _publisher(hub)
        refused = [backend.send(lms.next_event()) for _ in range(3)]
        _wait(lambda: len(api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]) == 3)

        mode["reply"] = Reply(503, {}, b"maintenance until 10:00")
        waiting = backend.send(lms.next_event())
        _wait(lambda: (api.get(f"/clients/{client_id}").json()["retry"] or {}).get("attempts") == 1)
        detail = api.get(f"/clients/{client_id}").json()
        assert detail["queue"]["queued"] == 1 and detail["deadletters"] == 3
        assert detail["retry"]["next_attempt_at"] > time.time() + 400
        assert detail["retry"]["last_error"] == "HTTP 503: maintenance until 10:00"

        event_types = {d["cursor"]: d["event_type"]
                       for d in api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]}
        page.goto(f"{hub.http}/admin/clients/{client_id}")
        rows = page.locator("#deadletter-list tbody tr")
        listed = [rows.nth(i).inner_text() for i in range(rows.count())]
        next_attempt = page.inner_text("#next-attempt")
        queue = page.inner_text("#queue")
        log = page.inner_text("#delivery-log")
        _screenshot(page, "client-dead-letters.png")

        mode["reply"] = Reply(200)
        started = time.monotonic()
        page.click("#retry-now")
        retried = page.inner_text(".notice")
        _wait(lambda: any(r.json.get("cursor") == waiting and r.status == 200 for r in receiver.requests))
        retry_took = time.monotonic() - started
        _wait(lambda: api.get(f"/clients/{client_id}").json()["retry"] is None)
        page.goto(f"{hub.http}/admin/clients/{client_id}")
        after_retry = page.inner_text("#queue")

        page.locator("#deadletter-list tbody tr").nth(1).locator("input[name=ids]").check()
        page.locator("#deadletters button[form=replay-chosen]").click()
        chosen = page.inner_text(".notice")
        _wait(lambda: any(r.json.get("cursor") == refused[1] and r.status == 200 for r in receiver.requests))
        left = page.locator("#deadletter-list tbody tr").count()
        page.locator("#replay-all button[type=submit]").click()
        everything = page.inner_text(".notice")
        _wait(lambda: {r.json.get("cursor") for r in receiver.requests if r.status == 200} == {waiting, *refused})
        page.goto(f"{hub.http}/admin/clients/{client_id}")
        emptied = page.inner_text("#deadletters")

    assert len(listed) == 3
    for row, cursor in zip(listed, refused, strict=True):
        assert cursor in row and "receiver aborted the message: unknown course id" in row and row.rstrip().endswith("1")
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row) and event_types[cursor] in row, row
    assert "after 1 failed attempt" in next_attempt and "maintenance until 10:00" in next_attempt
    assert re.search(r"\(in (7|8|9|10|11) min\)", next_attempt), next_attempt  # 600 s +/- 20 %
    assert queue.startswith("1 event waiting · oldest published")
    assert "503" in log and "maintenance until 10:00" in log and "unknown course id" in log
    assert retried == "Retrying now." and retry_took < 10, "the retry did not wait its 10 minutes"
    assert "nothing waiting" in after_retry
    assert chosen == "Queued 1 dead letter for delivery again." and left == 2
    assert everything == "Queued 2 dead letters for delivery again."
    assert "No dead letters." in emptied
    deliveries = [r.json["cursor"] for r in receiver.requests if r.status == 200]
    assert deliveries == [waiting, refused[1], refused[0], refused[2]], "the chosen one, then the others oldest first"


def test_refusals_before_any_post_are_rows_of_the_delivery_log(guarded_hub: InProcessHub, page) -> None:
    async def register() -> None:
        redis = aioredis.Redis.from_url(guarded_hub.redis_url)
        try:  # written by hand: the registry refuses a loopback URL while private addresses are refused
            await write_client(redis, guarded_hub.settings, "guarded", "http://127.0.0.1:9/in")
        finally:
            await redis.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        pool.submit(asyncio.run, register()).result()
    api = _sign_in(guarded_hub, page)
    _publisher(guarded_hub).send(SimulatedLMS(seed=65).next_event())
    _wait(lambda: api.get("/deadletters", params={"client_id": "guarded"}).json()["deadletters"])
    page.goto(f"{guarded_hub.http}/admin/clients/guarded")
    facts = page.inner_text("main")
    rows = page.locator("#delivery-log tbody tr")
    logged = [rows.nth(i).inner_text() for i in range(rows.count())]
    reason = page.inner_text("#deadletter-list tbody tr .reason")

    assert "3 failed attempts" in facts and "No attempts yet" not in facts
    assert len(logged) == 3
    assert all("not sent" in row and "refused URL: " in row and "127.0.0.1" in row for row in logged), logged
    assert reason.startswith("refused URL: ")


def test_replay_to_a_disabled_endpoint_says_it_waits_and_enable_and_deliver_does_both(hub: InProcessHub, page) -> None:
    gone = {"value": True}
    with Receiver(lambda n: Reply(410) if gone["value"] else Reply(200)) as receiver:
        client_id, _ = hub.client(name="Old dashboard", delivery="webhook", webhook_url=receiver.url)
        until_delivering(hub, client_id)
        api = _sign_in(hub, page)
        backend = _publisher(hub)
        lms = SimulatedLMS(seed=62)
        cursors = [backend.send(lms.next_event()) for _ in range(2)]
        _wait(lambda: len(api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]) == 2)
        assert api.get(f"/clients/{client_id}").json()["delivery_status"] == "disabled"

        page.goto(f"{hub.http}/admin/clients/{client_id}")
        said_before = page.inner_text("#replay-disabled")
        buttons = page.locator("#replay-all button").all_inner_texts()
        _screenshot(page, "replay-disabled-endpoint.png")
        page.locator("#deadletter-list tbody tr").first.locator("input[name=ids]").check()
        page.locator("#deadletters button[form=replay-chosen][value='']").click()
        queued_only = page.inner_text(".notice")
        requests_while_disabled = len(receiver.requests)
        queued = api.get(f"/clients/{client_id}").json()["queue"]["queued"]
        still_disabled = page.inner_text("#replay-disabled")
        _screenshot(page, "replay-disabled-endpoint-queued.png")

        gone["value"] = False
        page.locator("#replay-all button.enable-and-deliver").click()
        enabled = page.inner_text(".notice")
        _wait(lambda: [r.json["cursor"] for r in receiver.requests if r.status == 200] == cursors)
        page.goto(f"{hub.http}/admin/clients/{client_id}")
        after = page.inner_text("main")

    assert "disabled" in said_before and "410 Gone" in said_before
    assert "they wait until delivery is enabled" in said_before
    assert buttons == ["Replay all: enable and deliver", "Replay all: queue, they wait"]
    assert queued_only == "Queued 1 dead letter; it waits until delivery to the webhook endpoint is enabled."
    assert requests_while_disabled == 1 and queued == 1 and "disabled" in still_disabled
    assert enabled == "Delivery to the webhook endpoint enabled; queued 1 dead letter for delivery."
    assert "#replay-disabled" not in after and "No dead letters." in after and "Enable the endpoint again" not in after


@pytest.fixture
def ralph(tmp_path: Path) -> Iterator[RalphServer]:
    server = RalphServer(tmp_path / "ralph")
    server.start()
    yield server
    server.stop()


def test_lrs_and_websocket_clients_are_shown_in_their_own_words(hub: InProcessHub, page, ralph: RalphServer) -> None:
    lrs_id, _ = hub.client(
        name="University LRS", type="university", delivery="lrs", endpoint_url=ralph.endpoint,
        endpoint_username=ralph.username, endpoint_password=ralph.password,
    )
    socket_id, _ = hub.client(name="Live tutor", type="adaptive")
    until_delivering(hub, lrs_id)
    api = _sign_in(hub, page)
    _publisher(hub).send(SimulatedLMS(seed=63).next_event())
    _wait(lambda: (api.get(f"/clients/{lrs_id}").json()["delivery_health"] or {}).get("delivered") == 1, 30)

    page.goto(f"{hub.http}/admin/clients/{lrs_id}")
    lrs_page = page.inner_text("main")
    lrs_fields = page.locator("#edit-client [name]").evaluate_all("els => els.map(e => e.name)")
    _screenshot(page, "lrs-client.png")
    page.goto(f"{hub.http}/admin/clients/{socket_id}")
    socket_page = page.inner_text("main")
    socket_fields = page.locator("#edit-client [name]").evaluate_all("els => els.map(e => e.name)")

    assert "LRS endpoint" in lrs_page and "LRS deliveries" in lrs_page and "1 statements stored" in lrs_page
    assert ralph.endpoint in lrs_page and "Dead letters" in lrs_page and "Delivery log" in lrs_page
    assert "Webhook" not in lrs_page
    assert "webhook_url" not in lrs_fields
    assert {"endpoint_url", "endpoint_username", "webhook_batch_max"} <= set(lrs_fields)
    assert "Live connections" in socket_page and "nothing is queued, retried or dead-lettered" in socket_page
    assert "Webhook" not in socket_page and "Delivery log" not in socket_page and "Dead letters" not in socket_page
    assert not {"webhook_url", "endpoint_url", "webhook_batch_max"} & set(socket_fields)


def test_a_caliper_endpoint_client_is_shown_in_its_own_words(hub: InProcessHub, page) -> None:
    with Receiver() as endpoint:
        client_id, _ = hub.client(
            name="Caliper analytics", type="university", translator="caliper", delivery="caliper-endpoint",
            endpoint_url=endpoint.url, endpoint_token="caliper-api-key",
        )
        until_delivering(hub, client_id)
        api = _sign_in(hub, page)
        _publisher(hub).send(SimulatedLMS(seed=64).next_event())
        _wait(lambda: (api.get(f"/clients/{client_id}").json()["delivery_health"] or {}).get("delivered") == 1, 30)

        page.goto(f"{hub.http}/admin/clients/{client_id}")
        shown = page.inner_text("main")
        fields = page.locator("#edit-client [name]").evaluate_all("els => els.map(e => e.name)")

    assert endpoint.requests[0].json["dataVersion"] == "http://purl.imsglobal.org/ctx/caliper/v1p2"
    assert "Caliper endpoint" in shown and "Caliper deliveries" in shown and "1 events stored" in shown
    assert endpoint.url in shown and "Dead letters" in shown and "Delivery log" in shown
    assert "Webhook" not in shown and "LRS" not in shown and "caliper-api-key" not in shown
    assert "webhook_url" not in fields and {"endpoint_url", "endpoint_token", "webhook_batch_max"} <= set(fields)
    assert not {"endpoint_username", "endpoint_password"} & set(fields), "a Caliper endpoint takes a bearer key only"


def test_revoke_rotate_and_disable_ask_first_even_without_javascript(hub: InProcessHub, page) -> None:
    with Receiver() as receiver:
        client_id, secret = hub.client(name="Grades sync", delivery="webhook", webhook_url=receiver.url)
        api = _sign_in(hub, page)
        session = {c["name"]: c["value"] for c in page.context.cookies()}
        page.goto(f"{hub.http}/admin/clients/{client_id}")
        csrf = page.locator("#edit-client input[name=csrf]").input_value()
        unconfirmed = {
            action: httpx.post(f"{hub.http}/admin/clients/{client_id}/{action}", data={"csrf": csrf}, cookies=session)
            for action in ("revoke", "rotate", "webhooks/disable")
        }
        untouched = api.get(f"/clients/{client_id}").json()
        assert hub.token_for(client_id, secret)

        page.click("#disable-delivery")
        asked_disable = page.inner_text("#confirm-page")
        page.click("#cancel")
        cancelled = api.get(f"/clients/{client_id}").json()["delivery_status"]
        page.click("#disable-delivery")
        page.click("#confirm")
        disabled = page.inner_text(".notice")
        status = api.get(f"/clients/{client_id}").json()

        page.click("#rotate")
        asked_rotate = page.inner_text("#confirm-page")
        page.click("#confirm")
        rotated = page.inner_text("#client-secret")

        page.goto(f"{hub.http}/admin/clients/{client_id}")
        page.click("#revoke")
        asked_revoke = page.inner_text("#confirm-page")
        page.click("#confirm")
        revoked = page.inner_text(".notice")

    assert all(r.status_code == 200 and 'id="confirm-page"' in r.text for r in unconfirmed.values())
    assert (untouched["status"], untouched["delivery_status"]) == ("active", "ok")
    assert "Disable delivery to the webhook endpoint of Grades sync?" in asked_disable and cancelled == "ok"
    assert disabled == "Delivery to the webhook endpoint disabled."
    assert status["delivery_status"] == "disabled" and "disabled by an admin" in status["delivery_status_reason"]
    assert "Rotate the secret of Grades sync?" in asked_rotate and rotated and rotated != secret
    assert "Revoke Grades sync?" in asked_revoke and "Revoked Grades sync" in revoked
    assert api.get(f"/clients/{client_id}").json()["status"] == "revoked"
