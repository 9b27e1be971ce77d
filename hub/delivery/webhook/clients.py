"""Webhook clients: the delivery view of a registry record (URL, signer, compiled grant, batching).

Records are read through `auth.registry.ClientRegistry`, the one reader of client hashes; this
module only decides which clients receive webhooks now and prepares what delivery needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from auth.clients import ENDPOINT_DELIVERIES, Client
from auth.endpoint_credentials import CredentialError
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.formats.batch import BatchSender
from hub.delivery.webhook.formats.endpoint import endpoint_sender
from hub.delivery.webhook.signing import SecretError, Signer
from rthub_lms.grants import GrantError, Matcher, compile_grant, validate_grant

WEBHOOK_DELIVERIES = ("webhook", "websocket+webhook", *ENDPOINT_DELIVERIES)
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class WebhookClient:
    """A client that receives events by webhook; `fallback` is true for websocket+webhook.

    LRS and Caliper-endpoint clients carry a `sender` (their body, headers and status codes). A client
    is `paused` while its endpoint refuses the credentials (`paused_for` "endpoint"), or while its
    configuration is unusable here ("credential": it does not decrypt, "secret", "grant"): it is still
    routed, its events wait, and nothing is sent until it is fixed. `matcher` is None when the grant
    itself does not compile: the router then holds the client's place in the stream instead.
    """

    client_id: str
    consumer_type: str  # its actor space (`auth.clients.actor_space`): whose ids its actors are
    translator: str
    url: str
    signer: Signer | None
    matcher: Matcher | None
    fallback: bool
    batch_max: int = 1
    batch_wait: float = 0.0
    sender: BatchSender | None = None
    paused: bool = False
    paused_for: str = ""
    pause_reason: str = ""
    routed_from: str = ""


def webhook_view(client: Client, settings: Settings) -> WebhookClient | None:
    """The webhook view of one client, or None when it is not to receive webhooks (not a webhook
    delivery, revoked, endpoint disabled). An unusable configuration gives a paused view, never None:
    the client's events must be kept for it, not skipped."""
    if client.delivery not in WEBHOOK_DELIVERIES or not client.active:
        return None
    endpoint = client.delivery in ENDPOINT_DELIVERIES
    if client.webhook_status == "disabled" or not (client.endpoint_url if endpoint else client.webhook_url):
        return None
    paused_for, reason = ("endpoint", client.webhook_disabled_reason) if client.webhook_status == "paused" else ("", "")
    matcher = signer = sender = None
    url = client.webhook_url
    try:
        matcher = compile_grant(validate_grant(client.grant))
    except GrantError as exc:
        paused_for, reason = "grant", f"grant does not validate: {exc}"
    try:
        signer = Signer(client.webhook_secret)
    except SecretError as exc:
        paused_for, reason = "secret", f"webhook secret unusable: {exc}"
    if endpoint:
        try:
            url, sender = endpoint_sender(client, settings)
        except CredentialError as exc:
            url, paused_for, reason = client.endpoint_url, "credential", str(exc)
    return WebhookClient(
        client_id=client.client_id,
        consumer_type=client.actor_space,
        translator=client.translator,
        url=url,
        signer=signer,
        matcher=matcher,
        fallback=client.delivery == "websocket+webhook",
        batch_max=min(max(client.webhook_batch_max, 1), MAX_BATCH),
        batch_wait=max(client.webhook_batch_wait, 0.0),
        sender=sender,
        paused=bool(paused_for),
        paused_for=paused_for,
        pause_reason=reason,
        routed_from=client.routed_from,
    )


def as_shown(client: Client, settings: Settings) -> Client:
    """The client as the admin API and page show it: while its webhook configuration is unusable here
    (as the hub sees it now: a credential that does not decrypt, a bad secret, a grant that does not
    compile) its webhook status reads `paused` with the reason; the stored record is not changed."""
    view = webhook_view(client, settings)
    if view is None or view.paused_for in ("", "endpoint"):
        return client
    return replace(client, webhook_status="paused", webhook_disabled_reason=view.pause_reason)


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


async def disable(
    redis: aioredis.Redis, settings: Settings, client_id: str, reason: str, routed_from: str | None = None
) -> None:
    """Stop webhook delivery for a client (its endpoint said 410 Gone) and tell every hub instance;
    enabling it again catches it up from `routed_from` (default: where the stream stands now)."""
    await ClientRegistry(redis, settings).disable_webhooks(client_id, reason, routed_from)


async def pause(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> None:
    """Hold delivery for a client whose endpoint refused its credentials (401/403), queue kept."""
    await ClientRegistry(redis, settings).pause_endpoint(client_id, reason)
