"""Backfill from a gzip tracking log into a real Ralph LRS: SIGKILLed at random points, rerun, exactly
the statements the hub would render, each once, with the same actors as live."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.redis import client as redis_client
from rthub_lms import keys
from tests.hub.backfill.helpers import backfill, backfill_command, expected_statements, history, write_log
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hubproc import ROOT
from tests.servers import RedisServer
from tests.waiting import wait_until

COURSE = "course-v1:MITx+6.002x+2026_T1"


def lrs_client(settings: Settings, ralph: RalphServer, grant: list[dict]) -> str:
    async def create() -> str:
        redis_async = redis_client(settings.redis_url)
        try:
            client, _ = await ClientRegistry(redis_async, settings).create(
                name="Aspects LRS", type="enterprise", translator="xapi", delivery="lrs",
                endpoint_url=ralph.endpoint, endpoint_username=ralph.username,
                endpoint_password=ralph.password, webhook_batch_max=25, grant=grant,
            )
        finally:
            await redis_async.aclose()
        return client.client_id

    return asyncio.run(create())


@pytest.mark.slow
def test_sigkilled_twice_then_rerun_stores_every_statement_exactly_once(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    env = {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix,
           "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}
    settings = Settings.from_env(env)
    client_id = lrs_client(settings, ralph, [{"courses": [COURSE]}])
    events = history(1500, seed=7)
    log = write_log(tmp_path / "tracking.log-20250301.gz", events, [b"{not json\n", b"\n"])
    checkpoint = keys.backfill_checkpoint(settings, client_id)
    plain = redis.Redis.from_url(redis_server.url)
    chance = random.Random(2025)
    def kill_once(field: str) -> None:
        """Start a run and SIGKILL it at a random moment after its checkpoint counts `field`."""
        run = subprocess.Popen(backfill_command("--client", client_id, "--rate", "600", str(log)), cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: int(plain.hget(checkpoint, field) or 0) > 0, 30, f"the backfill's {field} counted")
        wait_until(lambda: run.poll() is not None or chance.random() < 0.05, 10, "a random moment")
        run.send_signal(signal.SIGKILL)
        run.wait(10)

    kill_once("lines")  # while reading
    kill_once("delivered")  # while delivering
    assert plain.exists(checkpoint), "the kills came after the job finished: nothing was tested"
    stored_before = len(ralph.statements())
    done = backfill(env, "--client", client_id, str(log))
    assert done.returncode == 0, done.stderr
    assert not plain.exists(checkpoint, keys.backfill_queue(settings, client_id))
    wanted = [event for event in events if COURSE in str(event)]
    expected = expected_statements(settings, wanted, "xapi", "enterprise")
    stored = ralph.statements()
    assert 0 < stored_before < len(stored)
    assert len(stored) == len(expected) == len({statement["id"] for statement in expected})
    assert sorted(s["id"] for s in stored) == sorted(s["id"] for s in expected)
    by_id = {s["id"]: s for s in stored}
    assert all(by_id[s["id"]]["actor"] == s["actor"] for s in expected)
    assert f"queued {len(expected)}," in done.stderr and "1 unreadable" in done.stderr
