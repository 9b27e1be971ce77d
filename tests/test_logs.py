"""Structured logs from a real hub: JSON lines carrying the client id, never secrets or learner identity."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from tests.hubproc import ROOT, HubProcess
from tests.servers import RedisServer
from tests.wsclient import connect


def test_hub_logs_json_lines_with_client_id_and_no_secrets(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(hub.port), "--log-level", "info"],
        cwd=ROOT, env=hub.env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{hub.http}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "hub did not start"
                time.sleep(0.05)
        client_id, secret = hub.client()
        token = hub.token_for(client_id, secret)

        async def revoke_while_connected() -> None:
            ws = await connect(hub.ws, token)
            redis = aioredis.Redis.from_url(hub.redis_url)
            await ClientRegistry(redis, hub.settings).revoke(client_id)
            await redis.aclose()
            await asyncio.wait_for(ws.wait_closed(), 5)

        asyncio.run(revoke_while_connected())
        time.sleep(0.3)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("client_id") == client_id and "revoked" in r["message"] for r in records), stderr[-2000:]
    assert secret not in stderr and token not in stderr
