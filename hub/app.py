"""The hub's Starlette application: the WebSocket stream, health endpoints, and the pieces behind them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisClusterException, RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from auth.closecodes import CloseCode
from auth.endpoint_credentials import checked_cipher
from auth.identity import Authenticator
from auth.keyring import KeyMismatch
from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from auth.routes import auth_routes
from auth.websocket import JwtAuthenticator
from hub.admin.routes import admin_routes
from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.control.changes import ChangeFollower, follow_sockets
from hub.control.presence import Presence
from hub.delivery.asyncapi import PATH as ASYNCAPI_PATH
from hub.delivery.asyncapi import asyncapi_document
from hub.delivery.webhook.outbox import Outbox
from hub.delivery.webhook.router import WebhookRouter
from hub.delivery.websocket.endpoint import EventsEndpoint
from hub.delivery.websocket.writer import UVICORN_WS
from hub.fanout.dispatch import Fanout
from hub.fanout.stage.bundle import Bundle
from hub.fanout.stage.feed import follow
from hub.ingest import BadEntry, BrokerUnavailable, Entry
from hub.ingest.deadletters import RedisDeadLetters
from hub.ingest.history import SharedHistory
from hub.ingest.redis import RedisBroker
from hub.lifetime import die_with_parent
from hub.metrics import HubCollector, Metrics, RedisSafetyCollector, WebhookBacklog
from hub.redis import UNREACHABLE, Backoff, Client, connect
from hub.redis_safety import DataMarker, RedisUnsafe, SafetyWatch
from hub.translate import TranslationSettings
from rthub_lms.connect import Topology, discover

log = logging.getLogger("rthub.app")

REDIS_CONNECTIONS = 64
# SIGTERM: stop accepting, close sockets with 1012, let in-flight requests finish for up to this long
# (well inside a 30 s orchestrator grace period), then cancel what is left.
GRACEFUL_SHUTDOWN_SECONDS = 10
REDIS_POOL_WAIT = 5.0
READY_TIMEOUT = 1.0
SAFETY_TIMEOUT = 5.0
MARKER_EVERY = 30.0  # how often the data marker is checked besides after every reconnect (a FLUSHALL drops none)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app, wherever it runs it (`rthub serve`, the tests' in-process hub): the
    frame-writer protocol, the client frame limit, keepalive pings and the graceful shutdown."""
    return {
        "ws": UVICORN_WS,
        "ws_max_size": 64 * 1024,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


def create_app(settings: Settings | None = None, *, authenticator: Authenticator | None = None) -> Starlette:
    """Build the hub on Redis at `settings.redis_url`, with OAuth consumers and the admin surfaces.

    A test may pass its own authenticator; the token endpoint and admin routes then are its to mount.
    """
    settings = settings or Settings.from_env()
    topology = discover(settings.redis_url)
    client = redis_client(topology)
    broker = RedisBroker(client, settings, sharded=topology.sharded)
    id_store = RedisIdStore(client, settings)
    auth_http: list[BaseRoute] = []
    keys: SigningKeys | None = None
    if authenticator is None:
        keys = SigningKeys(settings, client)
        authenticator = JwtAuthenticator(settings, client, keys)
        auth_http = [*auth_routes(settings, client, keys), *admin_routes(settings, client, keys)]
    fanout = Fanout(
        Anonymiser(id_store),
        TranslationSettings(settings.lms_root_url, settings.transformer_version),
        RedisDeadLetters(client, settings),
        queue_size=settings.send_queue_size,
    )
    changes = ChangeFollower(client, settings)
    webhooks = WebhookRouter(
        broker, client, settings, fanout.renderer.render, facts=fanout.renderer.facts, changes=changes
    )
    presence = Presence(client, settings, tip=broker.tip, last_cursors=fanout.last_cursors)

    def webhook_counts() -> Counter[str]:
        return webhooks.delivery_counts() + webhooks.counts

    history = SharedHistory(broker)
    safety = SafetyWatch(client)
    marker = DataMarker(client, settings)
    metrics = Metrics()
    metrics.watch(HubCollector(
        fanout, broker, webhook_counts, lambda: metrics.sent_frames, history.counts, lambda: changes.failures,
        signing_key_missing=lambda: keys is not None and bool(keys.missing),
        webhook_paused=webhooks.paused,
    ))
    metrics.watch(RedisSafetyCollector(safety.counts, lambda: marker.losses))
    outbox = Outbox(client, settings)
    backlog = WebhookBacklog(lambda: outbox.backlog(list(webhooks.clients)))
    metrics.watch(backlog)

    async def metrics_endpoint(request: Request) -> Response:
        await backlog.refresh(READY_TIMEOUT)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    asyncapi = asyncapi_document(settings)

    async def asyncapi_endpoint(request: Request) -> JSONResponse:
        return JSONResponse(asyncapi)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        try:  # redis-py retries a refused connection for seconds; a probe wants an answer now
            ready = await asyncio.wait_for(broker.ping(), READY_TIMEOUT)
        except TimeoutError:
            ready = False
        body: dict[str, Any] = {"ready": ready}
        if ready:  # unsafe settings are reported, not made unready: the hub works, at a risk
            with contextlib.suppress(TimeoutError, *UNREACHABLE):
                await asyncio.wait_for(safety.current(), READY_TIMEOUT)
        if safety.problems is not None:
            body["redis"] = {"safe": not safety.problems, "problems": [p.public() for p in safety.problems]}
        if keys is not None and keys.missing:  # still serving and verifying: a detail, not unready
            body["signing_key"] = keys.missing
        return JSONResponse(body, status_code=200 if ready else 503)

    registry = ClientRegistry(client, settings)
    routes: list[BaseRoute] = [
        WebSocketRoute(
            "/v1/events",
            EventsEndpoint(
                fanout, history, authenticator, settings.send_queue_size, presence, metrics.frames_sent,
                max_sockets_per_client=settings.ws_max_sockets_per_client,
                grant_changes=registry.grant_changes,
            ),
        ),
        Route(ASYNCAPI_PATH, asyncapi_endpoint, methods=["GET"]),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *auth_http,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await check_redis_safety(safety, settings.strict_redis)
        await check_keys(client, settings, keys)
        await webhooks.start()
        webhooks.follow()
        presence.start()
        follow_sockets(changes, fanout, registry.identity)
        changes.register(None, marker.check, resync_every=MARKER_EVERY)  # after every reconnect, and often
        changes.start()
        # Everything made at start (modules, app, caches) leaves the collector's view: the first full
        # collection would otherwise scan it all at once, a ~30 ms pause in the live path.
        gc.collect()
        gc.freeze()
        tasks = [
            asyncio.create_task(run_fanout(fanout, broker, settings), name="rthub-fanout"),
            asyncio.create_task(registry.sync_active_grants(), name="rthub-grants-sync"),
        ]
        if keys is not None:
            tasks.append(asyncio.create_task(keys.follow(), name="rthub-signing-keys"))
        try:
            yield
        finally:
            for conn in list(fanout.connections.values()):
                conn.close(CloseCode.SERVICE_RESTART, "hub shutting down")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await changes.close()
            await presence.close()
            await webhooks.close()
            await broker.close()

    return Starlette(routes=routes, lifespan=lifespan)


async def check_redis_safety(safety: SafetyWatch, strict: bool) -> None:
    """At start: a warning line per Redis setting that can lose rthub's data; with `strict`, `RedisUnsafe`
    instead (also when Redis cannot be checked), so the hub does not start."""
    try:
        problems = await asyncio.wait_for(safety.check(), SAFETY_TIMEOUT)
    except (TimeoutError, RedisError, RedisClusterException, *UNREACHABLE) as exc:  # never stops a lenient hub
        if strict:
            raise RedisUnsafe(None, f"Redis could not be checked: {exc!r}") from exc
        log.warning("Redis safety not checked at start (%r); /readyz checks again", exc)
        return
    if strict and problems:
        raise RedisUnsafe(problems)
    for problem in problems:
        log.warning("%s", problem.line())
async def check_keys(client: Client, settings: Settings, keys: SigningKeys | None) -> None:
    """Before serving: the endpoint key and the signing key must be the ones the registry records (made
    and recorded on a deployment's first start); a mismatch stops the hub, naming what to fix."""
    try:
        await checked_cipher(client, settings)
        if keys is not None:
            await keys.start()
    except KeyMismatch as exc:
        log.error("refusing to start: %s", exc)
        raise


async def run_fanout(fanout: Fanout, broker: RedisBroker, settings: Settings) -> None:
    """The fan-out, fed from where the stream stands now: a socket welcomed before the first event is told
    that cursor, so it can resume from it (a hub starts with Redis reachable; a refusal is waited out)."""
    backoff = Backoff()
    while True:
        try:
            start = await broker.tip() or "0-0"
            break
        except BrokerUnavailable as exc:
            delay = backoff.next_delay()
            log.warning("the fan-out waits for Redis (%s); retrying in %.2fs", exc, delay)
            await asyncio.sleep(delay)
    await fanout.run(live_feed(broker, settings, start), start)


def live_feed(
    broker: RedisBroker, settings: Settings, after: str | None = None
) -> AsyncIterator[Entry | BadEntry | Bundle]:
    """The fan-out's feed after `after`: the render stage's bundles under `rthub serve --workers N`, else
    the live channel."""
    if settings.render_stage_socket:
        return follow(broker, settings.render_stage_socket, after)
    return broker.live(after)


def redis_client(topology: Topology) -> Client:
    """The process's Redis client: on one server, a bounded pool that makes a burst of handshakes wait
    for a connection instead of failing (redis-py's default pool raises once it is exhausted)."""
    return connect(topology, max_connections=REDIS_CONNECTIONS, timeout=REDIS_POOL_WAIT, health_check_interval=10)


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (and `rthub serve`): settings come from RTHUB_* variables.

    A worker of `rthub serve --workers N` (it has a render stage) leaves with its supervisor: uvicorn
    does not stop its workers when the supervisor is SIGKILLed, and orphans would keep the port.
    """
    settings = Settings.from_env()
    if settings.render_stage_socket:
        die_with_parent()
    return create_app(settings)
