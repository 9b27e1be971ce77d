"""Real clients for the benchmark: one OAuth client per course, each granted that course only.

Clients are registered straight in the registry (what `rthub clients create --grant ...` does,
without a process per client), and each gets its access token from `POST /oauth/token` with client
credentials, as any consumer would. Subscriber i connects with the token of course
i % COURSE_COUNT and no filter, so entitlement is the hub's grant index, as in production.
"""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings


async def _register(redis_url: str, prefix: str, courses: tuple[str, ...]) -> list[tuple[str, str]]:
    settings = Settings.from_env(redis_url=redis_url, redis_prefix=prefix)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        registry = ClientRegistry(redis, settings)
        created = [
            await registry.create(name=f"bench {course}", type="other", translator="xapi",
                                  grant=[{"courses": [course]}])
            for course in courses
        ]
    finally:
        await redis.aclose()
    return [(client.client_id, secret) for client, secret in created]


def course_tokens(base_url: str, redis_url: str, prefix: str, courses: tuple[str, ...]) -> list[str]:
    """Register one client per course (grant: that course) and return their access tokens, in course order."""
    tokens = []
    for client_id, secret in asyncio.run(_register(redis_url, prefix, courses)):
        response = httpx.post(
            f"{base_url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "events:read"},
            auth=(client_id, secret),
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"POST /oauth/token answered {response.status_code}: {response.text[:200]}")
        tokens.append(response.json()["access_token"])
    return tokens
