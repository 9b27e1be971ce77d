"""The hub's Starlette application: the WebSocket stream, health endpoints, and the pieces behind them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from auth.identity import Authenticator
from auth.registry import ClientRegistry
from auth.routes import auth_routes
from auth.websocket import JwtAuthenticator
from hub.admin.routes import admin_routes
from hub.anonymise import Anonymiser, IdStore, RedisIdStore
from hub.config import Settings
from hub.control.changes import watch_changes
from hub.control.presence import Presence
from hub.delivery.webhook.router import WebhookRouter
from hub.delivery.websocket.connection import CLOSE_SERVICE_RESTART
from hub.delivery.websocket.transport import EventsEndpoint
from hub.fanout import Fanout
from hub.ingest import Broker
from hub.ingest.deadletters import RedisDeadLetters
from hub.ingest.redis import RedisBroker
from hub.metrics import HubCollector, Metrics
from hub.translate import TranslationSettings

log = logging.getLogger("rthub.app")

REDIS_CONNECTIONS = 64
REDIS_POOL_WAIT = 5.0
READY_TIMEOUT = 1.0


def create_app(
    settings: Settings | None = None,
    *,
    broker: Broker | None = None,
    id_store: IdStore | None = None,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """Build the hub on Redis at `settings.redis_url`, with OAuth consumers and the admin surfaces.

    The demo's in-process mode passes its own broker, id store and authenticator, and then runs
    without Redis (and so without the registry, the token endpoint and the admin page).
    """
    settings = settings or Settings.from_env()
    in_process = broker is not None and id_store is not None and authenticator is not None
    client = None if in_process else redis_client(settings)
    broker = broker or RedisBroker(client, settings)
    id_store = id_store or RedisIdStore(client, settings)
    auth_http: list[BaseRoute] = []
    if authenticator is None:
        jwt = JwtAuthenticator(settings, client)
        authenticator = jwt
        auth_http = [*auth_routes(settings, client, jwt.keys), *admin_routes(settings, client, jwt.keys)]
    fanout = Fanout(
        Anonymiser(id_store),
        TranslationSettings(settings.lms_root_url, settings.transformer_version),
        RedisDeadLetters(client, settings) if client is not None else None,
    )
    presence = None
    if client is not None:
        fanout.webhooks = WebhookRouter(client, settings, fanout.render)
        presence = Presence(client, settings, last_cursors=fanout.last_cursors)

    def webhook_counts() -> Counter[str]:
        return fanout.webhooks.delivery_counts() if fanout.webhooks is not None else Counter()

    metrics = Metrics()
    metrics.watch(HubCollector(fanout, broker, webhook_counts, lambda: metrics.sent_frames))

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        try:  # redis-py retries a refused connection for seconds; a probe wants an answer now
            ready = await asyncio.wait_for(broker.ping(), READY_TIMEOUT)
        except TimeoutError:
            ready = False
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    routes: list[BaseRoute] = [
        WebSocketRoute(
            "/v1/events",
            EventsEndpoint(
                fanout, broker, authenticator, settings.send_queue_size, presence, metrics,
                max_sockets_per_client=settings.ws_max_sockets_per_client,
            ),
        ),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *auth_http,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if fanout.webhooks is not None and presence is not None:
            await fanout.webhooks.start()
            presence.start()
        tasks = [asyncio.create_task(fanout.run(broker), name="rthub-fanout")]
        if client is not None:
            registry = ClientRegistry(client, settings)
            tasks.append(asyncio.create_task(registry.sync_active_grants(), name="rthub-grants-sync"))
            tasks.append(
                asyncio.create_task(watch_changes(client, settings, fanout, registry.identity), name="rthub-changes")
            )
        try:
            yield
        finally:
            for conn in list(fanout.connections.values()):
                conn.close(CLOSE_SERVICE_RESTART, "hub shutting down")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if fanout.webhooks is not None and presence is not None:
                await presence.close()
                await fanout.webhooks.close()
            await broker.close()

    return Starlette(routes=routes, lifespan=lifespan)


def redis_client(settings: Settings) -> aioredis.Redis:
    """The process's Redis client: a bounded pool that makes a burst of handshakes wait for a
    connection instead of failing (redis-py's default pool raises once it is exhausted)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_POOL_WAIT, health_check_interval=10
    )
    return aioredis.Redis(connection_pool=pool)


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (and `rthub serve`): settings come from RTHUB_* variables."""
    return create_app(Settings.from_env())
