"""Disabled delivery loses nothing: what is published while a client's endpoint is disabled (by an admin,
or by a `410 Gone`) is delivered, in cursor order and once, when delivery is enabled again, also when
the hub was SIGKILLed and restarted in between."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until


@pytest.fixture
def hub(redis_server: RedisServer, prefix: str) -> Iterator[HubProcess]:
    started = HubProcess(redis_server.url, prefix, env={"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"})
    started.start()
    yield started
    started.stop()


def _admin(hub: Hub) -> httpx.Client:
    token = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
    return httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.mark.parametrize("disabled_by", ["admin", "410"])
def test_what_is_published_while_disabled_is_delivered_once_enabled_across_a_hub_restart(
    hub: HubProcess, disabled_by: str
) -> None:
    gone = {"value": False}
    with Receiver(lambda n: Reply(410) if gone["value"] else Reply(200)) as receiver:
        client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
        until_delivering(hub, client_id)
        api = _admin(hub)
        lms = SimulatedLMS(seed=91)
        backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False,
                                  timeout=SEND_TIMEOUT)

        def delivered() -> list[str]:
            return [r.json["cursor"] for r in receiver.requests if r.status == 200]

        before = [backend.send(lms.next_event()) for _ in range(2)]
        wait_until(lambda: delivered() == before, 20, "the first events were not delivered")

        refused: list[str] = []
        if disabled_by == "admin":
            assert api.post(f"/clients/{client_id}/webhooks/disable").status_code == 200
        else:
            gone["value"] = True
            refused.append(backend.send(lms.next_event()))  # answered 410: dead-lettered, endpoint disabled
        wait_until(lambda: api.get(f"/clients/{client_id}").json()["delivery_status"] == "disabled", 20,
                   "the endpoint was not disabled")
        meanwhile = [backend.send(lms.next_event()) for _ in range(3)]

        hub.stop(signal.SIGKILL)
        hub.start()
        sent_while_disabled = [r.json["cursor"] for r in receiver.requests[len(before) + len(refused):]]

        gone["value"] = False
        assert api.post(f"/clients/{client_id}/webhooks/enable").status_code == 200
        wait_until(lambda: delivered() == before + meanwhile, 30,
                   "what was published while disabled was not delivered after enabling")
        dead = api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]
        backend.close()

    assert sent_while_disabled == []
    assert [row["cursor"] for row in dead] == refused  # the 410'd event waits in the dead letters
