"""The admin routes, mounted by the hub's app factory next to the OAuth routes."""

from __future__ import annotations

import redis.asyncio as aioredis
from starlette.routing import BaseRoute, Mount

from auth.keys import SigningKeys
from hub.admin.api import admin_api_routes
from hub.admin.page import admin_page_app
from hub.config import Settings


def admin_routes(settings: Settings, redis: aioredis.Redis, keys: SigningKeys) -> list[BaseRoute]:
    """`/admin/api` (JSON, bearer token with the `admin` scope) and `/admin` (the web page)."""
    return [
        Mount("/admin/api", routes=admin_api_routes(settings, redis, keys)),
        Mount("/admin", app=admin_page_app(settings, redis)),
    ]
