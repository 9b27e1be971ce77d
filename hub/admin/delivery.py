"""What the admin API and page both say about a client's delivery: what waits for it, what a replay
did (and whether it waits for a disabled endpoint), and who disabled an endpoint."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from auth.clients import Client
from auth.registry import ClientRegistry
from hub.admin.models import Replayed
from hub.config import Settings
from hub.delivery.webhook.deadletters import stored_deadletters
from hub.delivery.webhook.outbox import Outbox
from hub.delivery.webhook.retry import retry_state


async def delivery_facts(redis: aioredis.Redis, settings: Settings, client: Client) -> dict[str, Any]:
    """What waits for a client (`ClientDetail`'s own fields), for the API and the page alike."""
    if client.delivery == "websocket":
        return {"queue": None, "retry": None, "deadletters": 0}
    return {
        "queue": await Outbox(redis, settings).depth(client.client_id),
        "retry": await retry_state(redis, settings, client.client_id),
        "deadletters": await stored_deadletters(redis, settings, client.client_id),
    }


async def settle_replay(registry: ClientRegistry, moved: dict[str, int], enable: bool) -> Replayed:
    """After a replay: enable the disabled endpoints when asked, and count what still waits."""
    waiting, enabled = 0, []
    for client_id, count in sorted(moved.items()):
        client = await registry.get(client_id)
        if client is not None and enable and client.active and client.webhook_status == "disabled":
            await registry.enable_webhooks(client_id)
            enabled.append(client_id)
        elif client is None or not client.active or client.webhook_status:
            waiting += count
    return {"replayed": sum(moved.values()), "waiting": waiting, "enabled": enabled}


def disabled_by(admin_client_id: str) -> str:
    return (f"disabled by an admin ({admin_client_id}); what is published meanwhile is delivered once delivery "
            "is enabled again")
