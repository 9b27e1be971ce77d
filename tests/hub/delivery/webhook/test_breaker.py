"""A receiver down past the breaker period (compressed by configuration), on a real hub: the outbox stays
capped, the endpoint is disabled with its backlog dead-lettered, and the backlog is replayed by time."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import cursor_key
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import ROOT, HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until

CAP = 200
EVENTS = 2000


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@pytest.mark.slow
def test_dead_endpoint_is_capped_disabled_dead_lettered_and_replayable(redis_server: RedisServer, prefix: str) -> None:
    env = {
        "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.3"] * 30),
        "RTHUB_WEBHOOK_DISABLE_AFTER": "3", "RTHUB_WEBHOOK_OUTBOX_MAXLEN": str(CAP),
    }
    hub = HubProcess(redis_server.url, prefix, env=env)
    hub.start()
    up = {"value": False}
    check = redis.Redis.from_url(redis_server.url)
    outbox = rkeys.outbox(hub.settings, "x")
    try:
        with Receiver(lambda n: Reply(200 if up["value"] else 503)) as receiver:
            client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
            outbox = rkeys.outbox(hub.settings, client_id)
            admin = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
            api = httpx.Client(base_url=f"{hub.http}/admin/api", headers={"Authorization": f"Bearer {admin}"})
            until_delivering(hub, client_id)
            started = time.time()
            writer = StreamWriter(check, Settings(redis_prefix=prefix))
            simulator = SimulatedLMS(seed=3)
            cursors: list[str] = []
            longest = 0
            for _ in range(EVENTS // 100):
                cursors += writer.write_many([normalise(simulator.next_event()) for _ in range(100)])
                longest = max(longest, check.xlen(outbox))
                time.sleep(0.02)  # pacing

            def client() -> dict:
                return api.get(f"/clients/{client_id}").json()

            def disabled() -> bool:
                nonlocal longest
                longest = max(longest, check.xlen(outbox))
                return client()["webhook_status"] == "disabled"

            wait_until(disabled, 30, "the breaker never opened")
            disabled_at = time.time()
            shown = client()
            queued_after = check.xlen(outbox)
            dead = api.get("/deadletters", params={"client_id": client_id, "limit": "1000"}).json()["deadletters"]

            # The receiver is back: an operator re-enables the endpoint and replays what failed in the window.
            up["value"] = True
            assert api.post(f"/clients/{client_id}/webhooks/enable").json()["webhook_status"] == ""
            replay = subprocess.run(
                [sys.executable, "-m", "hub.cli", "deadletters", "replay", "--client", client_id,
                 "--since", _iso(started), "--until", _iso(disabled_at + 1), "--json",
                 "--redis-url", hub.redis_url, "--redis-prefix", prefix],
                cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
            )
            replayed = int(replay.stdout.split(":")[1].strip(" }\n"))
            wait_until(lambda: len([r for r in receiver.requests if r.status == 200]) >= replayed, 30,
                       "the replayed backlog was not delivered")
            delivered = [r.json["cursor"] for r in receiver.requests if r.status == 200]
    finally:
        hub.stop()
        check.close()
    health = shown["delivery_health"]
    print(f"breaker figure: outbox peak {longest} (cap {CAP}), overflowed {health['overflowed']}, "
          f"dead-lettered in bulk {len(dead)}, replayed {replayed}")
    assert "failing for" in shown["webhook_disabled_reason"]
    assert shown["webhook_status"] == "disabled"
    assert longest <= CAP + 100  # MAXLEN ~ trims whole 100-entry nodes
    assert queued_after == 0  # the backlog moved to the dead letters in bulk
    # Every event either overflowed the cap (counted) or is a dead letter: how many of each depends on
    # how far routing got before the breaker opened (all of it on an idle machine: about CAP dead letters).
    assert health["overflowed"] + len(dead) == EVENTS
    assert len(dead) >= CAP - 100
    assert {record["cursor"] for record in dead} <= set(cursors)
    assert replayed == len(dead)
    assert delivered == [record["cursor"] for record in dead]  # the newest events, replayed in order
    assert [cursor_key(c) for c in delivered] == sorted(cursor_key(c) for c in delivered)
