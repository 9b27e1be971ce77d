"""Structured logs from a real hub: JSON lines carrying the client id, never secrets or learner identity."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from typing import IO

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import websockets

from auth.registry import ClientRegistry
from tests.hubproc import ROOT, Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import until_serving, wait_until
from tests.wsclient import connect


def test_hub_logs_json_lines_with_client_id_and_no_secrets(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(hub.port), "--log-level", "info"],
        cwd=ROOT, env=hub.env, stderr=subprocess.PIPE, text=True,
    )
    lines = _lines_of(process.stderr)
    try:
        until_serving(process, f"{hub.http}/healthz", "hub")
        client_id, secret = hub.client()
        token = hub.token_for(client_id, secret)

        async def revoke_while_connected() -> None:
            ws = await connect(hub.ws, token)
            redis = aioredis.Redis.from_url(hub.redis_url)
            await ClientRegistry(redis, hub.settings).revoke(client_id)
            await redis.aclose()
            await asyncio.wait_for(ws.wait_closed(), 5)

        asyncio.run(revoke_while_connected())
        wait_until(lambda: any(client_id in line and "revoked" in line for line in lines), 20,
                   "the revocation was never logged")
    finally:
        process.terminate()
        process.wait(20)
    stderr = "".join(lines.wait())
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("client_id") == client_id and "revoked" in r["message"] for r in records), stderr[-2000:]
    assert secret not in stderr and token not in stderr


class _Lines(list[str]):
    """The lines a hub writes to a pipe, as they come (read by a thread, so a test can wait for one)."""

    def __init__(self, pipe: IO[str]) -> None:
        super().__init__()
        self._reader = threading.Thread(target=lambda: self.extend(iter(pipe.readline, "")), daemon=True)
        self._reader.start()

    def wait(self) -> list[str]:
        """Every line, once the pipe closed (the process ended)."""
        self._reader.join(20)
        return list(self)


def _lines_of(pipe: IO[str] | None) -> _Lines:
    assert pipe is not None
    return _Lines(pipe)


def _serve_logging(hub: Hub, log_format: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(hub.port), "--log-level", "info",
         "--log-format", log_format],
        cwd=ROOT, env=hub.env, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True,
    )
    until_serving(process, f"{hub.http}/healthz", "hub")
    return process


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_tokens_in_urls_never_reach_the_log(redis_server: RedisServer, prefix: str, log_format: str) -> None:
    """uvicorn's access log printed `/v1/events?access_token=eyJ...`, valid and forged alike."""
    hub = HubProcess(redis_server.url, prefix)
    process = _serve_logging(hub, log_format)
    lines = _lines_of(process.stdout)
    try:
        client_id, secret = hub.client()
        valid = hub.token_for(client_id, secret)
        header, payload, _ = valid.split(".")
        forged = f"{header}.{payload}.Zm9yZ2VkLXNpZ25hdHVyZQ"

        async def present_tokens_in_query_strings() -> int | None:
            async with websockets.connect(f"{hub.ws}?access_token={valid}") as ws:
                assert orjson.loads(await ws.recv())["type"] == "welcome"
            async with websockets.connect(f"{hub.ws}?access_token={forged}") as ws:
                await asyncio.wait_for(ws.wait_closed(), 5)
                return ws.close_code

        assert asyncio.run(present_tokens_in_query_strings()) == 4401
        httpx.get(f"{hub.http}/healthz?access_token={valid}&client_secret={secret}", timeout=5)
        httpx.get(f"{hub.http}/admin/api/clients", headers={"Authorization": f"Bearer {valid}"}, timeout=5)
        httpx.post(f"{hub.http}/oauth/token?client_secret={secret}", data={"grant_type": "client_credentials"},
                   auth=(client_id, secret), timeout=5)
        requests = ("/healthz?", "/admin/api/clients", "/oauth/token")
        wait_until(lambda: all(any(path in line for line in lines) for path in requests), 20,
                   "the requests were never logged")
    finally:
        process.terminate()
        process.wait(20)
    output = "".join(lines.wait())
    assert "/healthz?access_token=[redacted]&client_secret=[redacted]" in output, output[-3000:]
    assert "access_token=[redacted]" in output and "/v1/events" in output, "the upgrade requests were logged"
    for credential in (valid, forged, payload, secret):
        assert credential not in output, f"{credential[:12]}... leaked into the {log_format} log"
    if log_format == "json":
        assert all(json.loads(line) for line in output.splitlines() if line.startswith("{"))
