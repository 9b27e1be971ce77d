"""The hub's Starlette application: the WebSocket stream, health endpoints, and the pieces behind them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from hub.anonymise import Anonymiser, IdStore, RedisIdStore
from hub.broker import Broker
from hub.broker.redis import RedisBroker
from hub.config import Settings
from hub.connection import CLOSE_SERVICE_RESTART
from hub.devtoken import DevTokenAuthenticator
from hub.fanout import Fanout
from hub.identity import Authenticator
from hub.translate import TranslationSettings
from hub.transport import EventsEndpoint

log = logging.getLogger("rthub.app")


@dataclass
class Hub:
    """Everything one hub process runs, so tests and the demo can reach inside."""

    settings: Settings
    broker: Broker
    fanout: Fanout
    authenticator: Authenticator
    redis: aioredis.Redis | None


def create_app(
    settings: Settings | None = None,
    *,
    broker: Broker | None = None,
    id_store: IdStore | None = None,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """Build the hub. With no broker given it uses Redis at `settings.redis_url`."""
    settings = settings or Settings.from_env()
    client = None
    if broker is None or id_store is None:
        client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=10)
    broker = broker or RedisBroker(client, settings)
    id_store = id_store or RedisIdStore(client, settings)
    if authenticator is None:
        authenticator = DevTokenAuthenticator(settings.dev_token)
    fanout = Fanout(
        Anonymiser(id_store),
        TranslationSettings(settings.lms_root_url, settings.transformer_version),
    )
    hub = Hub(settings, broker, fanout, authenticator, client)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        ready = await broker.ping()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    routes: list[BaseRoute] = [
        WebSocketRoute("/v1/events", EventsEndpoint(fanout, broker, authenticator, settings.send_queue_size)),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pump = asyncio.create_task(fanout.run(broker), name="rthub-fanout")
        try:
            yield
        finally:
            for conn in list(fanout.connections.values()):
                conn.close(CLOSE_SERVICE_RESTART, "hub shutting down")
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await broker.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (and `rthub serve`): settings come from RTHUB_* variables."""
    return create_app(Settings.from_env())
