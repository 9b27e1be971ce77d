"""A real uvicorn serving `auth_routes` (plus a stand-in `/v1/events` using the authenticator) on a free
port, against the session's real redis-server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from auth.identity import AuthError
from auth.registry import ClientRegistry
from auth.routes import auth_routes
from auth.websocket import JwtAuthenticator
from hub.admin.routes import admin_routes
from hub.app import check_keys
from hub.config import Settings
from tests.servers import RedisServer, free_port

T = TypeVar("T")


def in_loop(settings: Settings, work: Callable[[ClientRegistry], Coroutine[Any, Any, T]]) -> T:
    """Run registry work on a fresh event loop with its own Redis connection, in a thread of its own
    because Playwright's sync API keeps an event loop running in the test's thread."""

    async def go() -> T:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await work(ClientRegistry(redis, settings))
        finally:
            await redis.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def stand_in_events(authenticator: JwtAuthenticator) -> WebSocketRoute:
    """What the hub does with an `Authenticator`: accept, then welcome or close with its code."""

    async def events(websocket: WebSocket) -> None:
        header = websocket.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else websocket.query_params.get("access_token", "")
        await websocket.accept()
        try:
            identity = await authenticator.authenticate(token)
        except AuthError as exc:
            await websocket.close(code=exc.close_code, reason=exc.reason)
            return
        await websocket.send_json(
            {"type": "welcome", "client_id": identity.client_id, "translator": identity.translator}
        )
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            return

    return WebSocketRoute("/v1/events", events)


@dataclass
class AuthServer:
    settings: Settings
    url: str
    http: httpx.Client

    def create(self, **values: Any) -> tuple[str, str]:
        values.setdefault("name", "consumer")
        values.setdefault("type", "adaptive")
        values.setdefault("translator", "xapi")

        async def work(registry: ClientRegistry) -> tuple[str, str]:
            client, secret = await registry.create(**values)
            return client.client_id, secret

        return in_loop(self.settings, work)

    def token(self, client_id: str, secret: str, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        response = self.http.post("/oauth/token", data=data, auth=(client_id, secret))
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def admin_token(self) -> str:
        client_id, secret = self.create(name="admin", type="other", scopes=["admin"])
        return self.token(client_id, secret)


def serve(app: Starlette, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return server, thread


@pytest.fixture
def auth_settings(redis_server: RedisServer, prefix: str) -> Settings:
    """Key files in the default data directory (the test run's), as a CLI started by a test finds them."""
    port = free_port()
    return Settings(
        redis_url=redis_server.url,
        redis_prefix=prefix,
        issuer=f"http://127.0.0.1:{port}",
        secret_grace_period=2,
    )


@pytest.fixture
def auth_server(auth_settings: Settings) -> Iterator[AuthServer]:
    redis = aioredis.Redis.from_url(auth_settings.redis_url)
    authenticator = JwtAuthenticator(auth_settings, redis)
    routes = [
        *auth_routes(auth_settings, redis, authenticator.keys),
        *admin_routes(auth_settings, redis, authenticator.keys),
        stand_in_events(authenticator),
    ]
    port = int(auth_settings.issuer.rsplit(":", 1)[1])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await check_keys(redis, auth_settings, authenticator.keys)  # as the hub's lifespan does
        following = asyncio.create_task(authenticator.keys.follow())
        yield
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await redis.aclose()

    server, thread = serve(Starlette(routes=routes, lifespan=lifespan), port)
    with httpx.Client(base_url=auth_settings.issuer, timeout=10) as http:
        yield AuthServer(auth_settings, auth_settings.issuer, http)
    server.should_exit = True
    thread.join(timeout=10)
