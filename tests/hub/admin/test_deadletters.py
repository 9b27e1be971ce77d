"""Dead letters through the admin API of a real hub: a failed delivery is listed, and replay delivers it."""

from __future__ import annotations

import httpx

from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, "condition not reached")


def test_admin_api_lists_and_replays_dead_letters(redis_server: RedisServer, prefix: str) -> None:
    env = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2"}
    hub = HubProcess(redis_server.url, prefix, env=env)
    hub.start()
    healthy = False
    try:
        with Receiver(lambda n: Reply(200 if healthy else 503)) as receiver:
            client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
            admin = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
            api = httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {admin}"})
            backend = RealtimeBackend(
                redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT,
            )
            cursor = backend.send(SimulatedLMS(seed=51).next_event())

            def listed() -> list[dict]:
                return api.get("/deadletters", params={"client_id": client_id}).json()["deadletters"]

            _wait(lambda: len(listed()) == 1)
            record = listed()[0]
            assert record["cursor"] == cursor and record["client_id"] == client_id
            assert len(receiver.requests) == 3  # first attempt and two retries
            health = api.get(f"/clients/{client_id}").json()["delivery_health"]
            assert (health["failed_attempts"], health["dead_lettered"], health["last_delivery_at"]) == (3, 1, None)
            assert health["last_error"].startswith("HTTP 503")
            assert api.get("/deadletters", params={"limit": "0"}).status_code == 422
            assert api.post("/deadletters/replay", json={"ids": "all"}).json()["field"] == "ids"

            healthy = True
            assert api.post("/deadletters/replay", json={"ids": [record["id"]]}).json() == {
                "replayed": 1, "waiting": 0, "enabled": []
            }
            _wait(lambda: receiver.requests[-1].status == 200)
            assert receiver.requests[-1].json["cursor"] == cursor
            assert listed() == []
            _wait(lambda: api.get(f"/clients/{client_id}").json()["delivery_health"]["delivered"] == 1)
            assert api.get(f"/clients/{client_id}").json()["delivery_health"]["last_delivery_at"] is not None
    finally:
        hub.stop()
