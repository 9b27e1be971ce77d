"""Webhook clients: the delivery view of a registry record (URL, signer, compiled grant, batching).

Records are read through `auth.registry.ClientRegistry`, the one reader of client hashes; this
module only decides which clients receive webhooks now and prepares what delivery needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from auth.clients import Client
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.signing import SecretError, Signer
from rthub_lms.grants import GrantError, Matcher, compile_grant, validate_grant

log = logging.getLogger("rthub.webhooks.clients")

WEBHOOK_DELIVERIES = ("webhook", "websocket+webhook")
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class WebhookClient:
    """A client that receives events by webhook; `fallback` is true for websocket+webhook."""

    client_id: str
    consumer_type: str
    translator: str
    url: str
    signer: Signer
    matcher: Matcher
    fallback: bool
    batch_max: int = 1
    batch_wait: float = 0.0


def webhook_view(client: Client) -> WebhookClient | None:
    """The webhook view of one client, or None when it must not receive webhooks now."""
    if client.delivery not in WEBHOOK_DELIVERIES or not client.active:
        return None
    if client.webhook_status == "disabled" or not client.webhook_url:
        return None
    try:
        grant = validate_grant(client.grant)
        signer = Signer(client.webhook_secret)
    except (GrantError, SecretError) as exc:
        log.warning("client %s has an unusable webhook configuration: %s", client.client_id, exc)
        return None
    return WebhookClient(
        client_id=client.client_id,
        consumer_type=client.type,
        translator=client.translator,
        url=client.webhook_url,
        signer=signer,
        matcher=compile_grant(grant),
        fallback=client.delivery == "websocket+webhook",
        batch_max=min(max(client.webhook_batch_max, 1), MAX_BATCH),
        batch_wait=max(client.webhook_batch_wait, 0.0),
    )


async def load_client(redis: aioredis.Redis, settings: Settings, client_id: str) -> WebhookClient | None:
    client = await ClientRegistry(redis, settings).get(client_id)
    return webhook_view(client) if client is not None else None


async def load_clients(redis: aioredis.Redis, settings: Settings) -> dict[str, WebhookClient]:
    """Every client that should receive webhooks now."""
    found: dict[str, WebhookClient] = {}
    for client in await ClientRegistry(redis, settings).list_all():
        view = webhook_view(client)
        if view is not None:
            found[client.client_id] = view
    return found


async def disable(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> None:
    """Stop webhook delivery for a client (its endpoint said 410 Gone) and tell every hub instance."""
    await ClientRegistry(redis, settings).disable_webhooks(client_id, reason)
