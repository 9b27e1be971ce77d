"""examples/adaptive_engine.py against a real server: token, stream, resume after a drop, stop on 4403."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from auth.routes import auth_routes
from auth.websocket import JwtAuthenticator
from hub.config import Settings
from tests import ROOT
from tests.authserver import AuthServer, serve
from tests.servers import free_port


def scripted_hub(settings: Settings, seen: list[dict]) -> Starlette:
    """First connection: two events then a slow-consumer close; second: one event then 4403."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    authenticator = JwtAuthenticator(settings, redis)

    async def events(websocket: WebSocket) -> None:
        await websocket.accept()
        identity = await authenticator.authenticate(websocket.headers["authorization"].split(" ", 1)[1])
        await websocket.send_json({"type": "welcome", "client_id": identity.client_id, "translator": "xapi"})
        data = {
            "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
            "actor": {"account": {"name": "u1"}},
            "object": {"id": "p1"},
        }
        if not seen:
            seen.append({"connected": True})
            for cursor in ("1-0", "2-0"):
                await websocket.send_json(
                    {"type": "event", "cursor": cursor, "event_type": "problem_check", "data": data}
                )
            await websocket.close(code=4008)
            return
        seen.append({"resume_from": websocket.query_params.get("resume_from")})
        await websocket.send_json({"type": "event", "cursor": "3-0", "event_type": "problem_check", "data": data})
        await websocket.close(code=4403, reason="client revoked")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await authenticator.keys.start()
        yield
        await redis.aclose()

    routes = [*auth_routes(settings, redis, authenticator.keys), WebSocketRoute("/v1/events", events)]
    return Starlette(routes=routes, lifespan=lifespan)


def test_example_streams_resumes_and_stops_when_revoked(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    port = free_port()
    settings = auth_server.settings.with_overrides(issuer=f"http://127.0.0.1:{port}")
    seen: list[dict] = []
    server, thread = serve(scripted_hub(settings, seen), port)
    try:
        env = {**os.environ, "RTHUB_CLIENT_ID": client_id, "RTHUB_CLIENT_SECRET": secret}
        result = subprocess.run(
            [sys.executable, "examples/adaptive_engine.py", "--url", settings.issuer],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["1-0", "2-0", "3-0"]
    assert "u1 http://adlnet.gov/expapi/verbs/answered p1" in lines[0]
    assert seen[1] == {"resume_from": "2-0"}, "the cursor rides on the upgrade request, no timed hold needed"
    assert "stopped" in result.stderr and "client revoked" in result.stderr
