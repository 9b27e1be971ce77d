"""Webhook clients: the delivery view of a registry record (URL, signer, compiled grant, batching).

Records are read through `auth.registry.ClientRegistry`, the one reader of client hashes; this
module only decides which clients receive webhooks now and prepares what delivery needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from auth.clients import ENDPOINT_DELIVERIES, Client
from auth.endpoint_credentials import CredentialError
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.formats.batch import BatchSender
from hub.delivery.webhook.formats.endpoint import endpoint_sender
from hub.delivery.webhook.signing import SecretError, Signer
from rthub_lms.grants import GrantError, Matcher, compile_grant, validate_grant

log = logging.getLogger("rthub.webhooks.clients")

WEBHOOK_DELIVERIES = ("webhook", "websocket+webhook", *ENDPOINT_DELIVERIES)
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class WebhookClient:
    """A client that receives events by webhook; `fallback` is true for websocket+webhook.

    LRS and Caliper-endpoint clients carry a `sender` (their body, headers and status codes) and are
    `paused` while their endpoint refuses the credentials.
    """

    client_id: str
    consumer_type: str
    translator: str
    url: str
    signer: Signer
    matcher: Matcher
    fallback: bool
    batch_max: int = 1
    batch_wait: float = 0.0
    sender: BatchSender | None = None
    paused: bool = False


def webhook_view(client: Client, settings: Settings) -> WebhookClient | None:
    """The webhook view of one client, or None when it must not receive webhooks now."""
    if client.delivery not in WEBHOOK_DELIVERIES or not client.active:
        return None
    endpoint = client.delivery in ENDPOINT_DELIVERIES
    if client.webhook_status == "disabled" or not (client.endpoint_url if endpoint else client.webhook_url):
        return None
    try:
        grant = validate_grant(client.grant)
        signer = Signer(client.webhook_secret)
        url, sender = endpoint_sender(client, settings) if endpoint else (client.webhook_url, None)
    except (GrantError, SecretError, CredentialError) as exc:
        log.warning("client %s has an unusable webhook configuration: %s", client.client_id, exc)
        return None
    return WebhookClient(
        client_id=client.client_id,
        consumer_type=client.type,
        translator=client.translator,
        url=url,
        signer=signer,
        matcher=compile_grant(grant),
        fallback=client.delivery == "websocket+webhook",
        batch_max=min(max(client.webhook_batch_max, 1), MAX_BATCH),
        batch_wait=max(client.webhook_batch_wait, 0.0),
        sender=sender,
        paused=client.webhook_status == "paused",
    )


async def load_client(redis: aioredis.Redis, settings: Settings, client_id: str) -> WebhookClient | None:
    client = await ClientRegistry(redis, settings).get(client_id)
    return webhook_view(client, settings) if client is not None else None


async def load_clients(redis: aioredis.Redis, settings: Settings) -> dict[str, WebhookClient]:
    """Every client that should receive webhooks now."""
    found: dict[str, WebhookClient] = {}
    for client in await ClientRegistry(redis, settings).list_all():
        view = webhook_view(client, settings)
        if view is not None:
            found[client.client_id] = view
    return found


async def disable(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> None:
    """Stop webhook delivery for a client (its endpoint said 410 Gone) and tell every hub instance."""
    await ClientRegistry(redis, settings).disable_webhooks(client_id, reason)


async def pause(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> None:
    """Hold delivery for a client whose endpoint refused its credentials (401/403), queue kept."""
    await ClientRegistry(redis, settings).pause_endpoint(client_id, reason)
