"""Webhook clients as the client registry describes them (design notes: set + hash + JSON grant).

Fields read from `{prefix}client:{id}`: `type`, `translator`, `delivery`, `status`, `grant`,
`webhook_url`, `webhook_secret`, and optionally `webhook_batch_max` (events per POST, default 1),
`webhook_batch_wait` (seconds to wait for a batch to fill, default 0) and `webhook_status`
(`disabled` after a 410 Gone). Writing `webhook_status` and publishing the id on `{prefix}changes`
is how delivery disables an endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from hub.config import Settings
from hub.grants import GrantError, Matcher, compile_grant, validate_grant
from hub.layout import changes_channel, client_key, clients_key
from hub.webhooks.signing import SecretError, Signer

log = logging.getLogger("rthub.webhooks.registry")

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


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def parse_client(client_id: str, raw: dict) -> WebhookClient | None:
    """The webhook view of one registry hash, or None when it must not receive webhooks now."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if fields.get("delivery") not in WEBHOOK_DELIVERIES or fields.get("status", "active") != "active":
        return None
    if fields.get("webhook_status") == "disabled" or not fields.get("webhook_url"):
        return None
    try:
        grant = validate_grant(orjson.loads(fields.get("grant") or "[]"))
        signer = Signer(fields.get("webhook_secret", ""))
        batch_max = min(max(int(fields.get("webhook_batch_max") or 1), 1), MAX_BATCH)
        batch_wait = max(float(fields.get("webhook_batch_wait") or 0), 0.0)
    except (orjson.JSONDecodeError, GrantError, SecretError, ValueError) as exc:
        log.warning("client %s has an unusable webhook configuration: %s", client_id, exc)
        return None
    return WebhookClient(
        client_id=client_id,
        consumer_type=fields.get("type", "other"),
        translator=fields.get("translator", "xapi"),
        url=fields["webhook_url"],
        signer=signer,
        matcher=compile_grant(grant),
        fallback=fields["delivery"] == "websocket+webhook",
        batch_max=batch_max,
        batch_wait=batch_wait,
    )


async def load_client(redis: aioredis.Redis, settings: Settings, client_id: str) -> WebhookClient | None:
    return parse_client(client_id, await redis.hgetall(client_key(settings, client_id)))


async def load_clients(redis: aioredis.Redis, settings: Settings) -> dict[str, WebhookClient]:
    """Every client that should receive webhooks now."""
    ids = sorted(_text(member) for member in await redis.smembers(clients_key(settings)))
    pipe = redis.pipeline(transaction=False)
    for client_id in ids:
        pipe.hgetall(client_key(settings, client_id))
    found: dict[str, WebhookClient] = {}
    for client_id, raw in zip(ids, await pipe.execute(), strict=True):
        client = parse_client(client_id, raw)
        if client is not None:
            found[client_id] = client
    return found


async def disable(redis: aioredis.Redis, settings: Settings, client_id: str, reason: str) -> None:
    """Stop webhook delivery for a client (its endpoint said 410 Gone) and tell every hub instance."""
    pipe = redis.pipeline(transaction=True)
    fields = {"webhook_status": "disabled", "webhook_disabled_reason": reason}
    pipe.hset(client_key(settings, client_id), mapping=fields)
    pipe.publish(changes_channel(settings), client_id)
    await pipe.execute()
