"""The admin page in a real headless Chromium against a real hub: a disabled endpoint is shown with its
reason, its dead letters are replayed by time from the page, and the endpoint is enabled again."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.admin.browser import needs_chromium
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = needs_chromium



def _local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, "condition not reached")


@pytest.mark.slow
def test_disabled_endpoint_is_shown_replayed_by_time_and_enabled(redis_server: RedisServer, prefix: str, page) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"})
    hub.start()
    gone = {"value": True}
    try:
        with Receiver(lambda n: Reply(410 if gone["value"] else 200)) as receiver:
            client_id, _ = hub.client(name="Enterprise LRS", delivery="webhook", webhook_url=receiver.url)
            admin_id, admin_secret = hub.client(name="Ops admin", scopes=["admin"], grant=[])
            until_delivering(hub, client_id)
            started = time.time() - 1
            backend = RealtimeBackend(
                redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT,
            )
            cursor = backend.send(SimulatedLMS(seed=4).next_event())
            _wait(lambda: len(receiver.requests) == 1)
            admin = hub.token_for(admin_id, admin_secret, scope="admin")
            status = httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {admin}"})
            _wait(lambda: status.get(f"/clients/{client_id}").json()["webhook_status"] == "disabled")

            page.goto(f"{hub.http}/admin/")
            page.fill("input[name=client_id]", admin_id)
            page.fill("input[name=client_secret]", admin_secret)
            page.click("button[type=submit]")
            assert "endpoint disabled" in page.locator(f"tr[data-client-id='{client_id}']").inner_text()
            page.goto(f"{hub.http}/admin/clients/{client_id}")
            shown = page.inner_text("main")

            form = page.locator("#replay-deadletters")
            form.locator("input[name=since]").fill(_local(time.time() + 60))  # a window with nothing in it
            form.locator("button[value='']").click()  # queue only: the endpoint stays disabled
            empty_window = page.inner_text(".notice")
            form = page.locator("#replay-deadletters")
            form.locator("input[name=since]").fill(_local(started))
            form.locator("input[name=until]").fill(_local(time.time() + 60))
            form.locator("button[value='']").click()
            replayed = page.inner_text(".notice")

            gone["value"] = False
            page.click("#enable-webhooks")
            enabled = page.inner_text(".notice")
            _wait(lambda: receiver.requests[-1].status == 200)
            after = page.inner_text("main")
    finally:
        hub.stop()
    assert "disabled" in shown and "410 Gone" in shown
    assert "Queued 0 dead letters" in empty_window
    assert "Queued 1 dead letter; it waits until delivery to the webhook endpoint is enabled" in replayed
    assert "enabled again" in enabled and "Enable the endpoint again" not in after
    assert [r.json["cursor"] for r in receiver.requests] == [cursor, cursor]
