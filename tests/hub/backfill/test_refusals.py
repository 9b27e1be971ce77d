"""What `rthub backfill` refuses, and how it says so: exit 2 with the reason, nothing queued."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.redis import client as redis_client
from rthub_lms import keys
from tests.hub.backfill.helpers import backfill, history, write_log
from tests.hub.delivery.webhook.receiver import Receiver
from tests.servers import RedisServer


@pytest.fixture
def env(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    return {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix,
            "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}


def create(env: dict[str, str], revoke: bool = False, **fields: object) -> str:
    settings = Settings.from_env(env)

    async def run() -> str:
        redis = redis_client(settings.redis_url)
        try:
            registry = ClientRegistry(redis, settings)
            client, _ = await registry.create(name="c", type="other", translator="xapi", grant=[{}], **fields)
            if revoke:
                await registry.revoke(client.client_id)
            return client.client_id
        finally:
            await redis.aclose()

    return asyncio.run(run())


def refused(env: dict[str, str], *args: str) -> str:
    done = backfill(env, *args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


def test_clients_that_cannot_be_backfilled(env: dict[str, str], tmp_path: Path) -> None:
    log = str(write_log(tmp_path / "t.log", history(5, seed=1)))
    assert "no client 'cl_nobody'" in refused(env, "--client", "cl_nobody", log)
    socket_only = create(env)
    assert "receives events over WebSocket only: a backfill has nowhere to deliver" in refused(
        env, "--client", socket_only, log)
    assert "receives events over WebSocket only" in refused(env, "--client", socket_only, "--dry-run", log)
    revoked = create(env, revoke=True, delivery="webhook", webhook_url="http://127.0.0.1:9/hook")
    assert f"client {revoked} is revoked" in refused(env, "--client", revoked, log)


def test_unreadable_sources_and_an_unfinished_job_with_other_sources(
    env: dict[str, str], tmp_path: Path, redis_server: RedisServer
) -> None:
    with Receiver() as receiver:
        client_id = create(env, delivery="webhook", webhook_url=receiver.url)
        assert f"{tmp_path}/missing.log: no such file or directory" in refused(
            env, "--client", client_id, str(tmp_path / "missing.log"))
        (tmp_path / "empty").mkdir()
        assert "empty: no file there" in refused(env, "--client", client_id, str(tmp_path / "empty"))
        assert "no file there" in refused(env, "--client", client_id, str(tmp_path / "*.nothing"))
        broken = write_log(tmp_path / "broken.log.gz", history(3000, seed=3))
        broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # cut short: a truncated gzip
        assert "broken.log.gz: cannot read" in refused(env, "--client", client_id, str(broken))
        assert "rerun it with the same arguments to finish it, or add --restart" in refused(
            env, "--client", client_id, str(write_log(tmp_path / "other.log", history(3, seed=2))))
        settings = Settings.from_env(env)
        assert redis_server.client().exists(keys.backfill_checkpoint(settings, client_id))
        before = len(receiver.requests)
        done = backfill(env, "--client", client_id, "--restart", str(tmp_path / "other.log"))
        assert done.returncode == 0, done.stderr
        assert len(receiver.requests) - before == 3
        assert not redis_server.client().exists(keys.backfill_checkpoint(settings, client_id))
