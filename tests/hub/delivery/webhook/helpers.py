"""Shared pieces for webhook tests: registry clients written by hand, a real render, event publishing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.delivery.webhook.deadletters import list_deadletters
from hub.delivery.webhook.router import WebhookRouter
from hub.delivery.webhook.signing import new_secret
from hub.delivery.webhook.worker import DeliveryOptions
from hub.dev.simulator import SimulatedLMS
from hub.fanout.dispatch import Fanout
from hub.ingest import Broker, Entry
from hub.ingest.redis import RedisBroker
from hub.translate import TranslationSettings
from rthub_lms import keys as rkeys
from rthub_lms.events import normalise
from rthub_lms.keys import changes_channel
from tests.hub.delivery.webhook.receiver import Request
from tests.hubproc import Hub
from tests.waiting import async_wait_until, wait_until

FAST = DeliveryOptions(timeout=2.0, lease_ttl_ms=1000, poll=0.1)


def settings_for(redis_url: str, prefix: str, schedule: tuple[float, ...] = (0.1, 0.2)) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=prefix, webhook_allow_private=True, webhook_retry_schedule=schedule
    )


async def write_client(
    redis: aioredis.Redis,
    settings: Settings,
    client_id: str,
    url: str,
    *,
    delivery: str = "webhook",
    grant: list[dict[str, Any]] | None = None,
    secret: str | None = None,
    **extra: str,
) -> str:
    """A registry client as the auth helper writes it (set + hash + JSON grant); returns its secret."""
    secret = secret or new_secret()
    fields = {
        "name": client_id, "type": "enterprise", "scopes": "events:read", "translator": "xapi",
        "delivery": delivery, "webhook_url": url, "webhook_secret": secret, "status": "active",
        "grant": orjson.dumps([{}] if grant is None else grant).decode(), **extra,
    }
    await redis.sadd(rkeys.clients_key(settings), client_id)
    await redis.hset(rkeys.client_key(settings, client_id), mapping=fields)
    await redis.publish(changes_channel(settings), client_id)
    return secret


def renderer(redis: aioredis.Redis, settings: Settings) -> Callable[[Entry, str, str], Awaitable[Any]]:
    """The real render cache (`hub.fanout.render.Renderer.render`: anonymise, translate, encode) on this Redis."""
    fanout = Fanout(
        Anonymiser(RedisIdStore(redis, settings)),
        TranslationSettings(settings.lms_root_url, settings.transformer_version),
    )
    return fanout.renderer.render


def router_on(
    redis: aioredis.Redis,
    settings: Settings,
    options: DeliveryOptions = FAST,
    render: Callable[[Entry, str, str], Awaitable[Any]] | None = None,
) -> WebhookRouter:
    """A router as the hub builds it: the stream read through a `RedisBroker` on `redis`, the real render."""
    return WebhookRouter(
        RedisBroker(redis, settings), redis, settings, render or renderer(redis, settings), options=options
    )


class Publisher:
    """Publishes simulated LMS events through the real broker (or `broker`) and returns their entries."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, seed: int = 1, broker: Broker | None = None) -> None:
        self.broker = broker or RedisBroker(redis, settings)
        self.lms = SimulatedLMS(seed=seed)

    async def entries(self, count: int) -> list[Entry]:
        found = []
        for _ in range(count):
            event = normalise(self.lms.next_event())
            found.append(Entry(await self.broker.publish(event), event))
        return found


def verify_by_hand(secret: str, request: Request, tolerance: float = 300) -> bool:
    """Standard Webhooks verification written out, independent of the signing library."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, stamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + request.body, hashlib.sha256).digest())
    return any(
        version == "v1" and hmac.compare_digest(signature.encode(), expected)
        for version, _, signature in (part.partition(",") for part in request.headers["webhook-signature"].split())
    )


async def until(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0) -> None:
    """Wait for `predicate` (may be a coroutine function) to hold, polling; fail the test on timeout."""
    await async_wait_until(predicate, timeout)


def until_delivering(hub: Hub, client_id: str, timeout: float = 30) -> None:
    """Until a hub has loaded `client_id` from the registry and started its webhook worker (which then
    holds the client's delivery lease): from then on the client's events are routed to its outbox."""
    check = redis.Redis.from_url(hub.redis_url)
    try:
        wait_until(lambda: check.exists(rkeys.lease(hub.settings, client_id)), timeout,
                   f"no hub started delivering webhooks for {client_id}")
    finally:
        check.close()


async def dead_letters_of_one_event(redis_url: str, prefix: str, url: str) -> list[dict]:
    """Route one event to a client at `url` with private addresses refused; its dead letters once any."""
    redis = aioredis.Redis.from_url(redis_url)
    settings = settings_for(redis_url, prefix, (0.05,)).with_overrides(webhook_allow_private=False)
    await write_client(redis, settings, "acme", url)
    router = router_on(redis, settings)
    await router.start()
    for entry in await Publisher(redis, settings).entries(1):
        await router.route(entry)
    while not (dead := await list_deadletters(redis, settings)):
        await asyncio.sleep(0.05)
    await router.close()
    await redis.aclose()
    return dead
