"""`rthub doctor`: every check that tells an operator, before it happens, that events would be lost or held.

Each check returns `Finding`s (what is wrong, and the fix); `diagnose` runs them all against one
deployment's settings and Redis. The checks reuse the owners of what they look at (the registry, the
endpoint formats, the delivery-time URL guard), so the doctor judges exactly as the hub will.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.doctor.endpoints import check_clients
from hub.doctor.findings import Finding, Severity
from hub.doctor.keys import check_keys
from hub.redis import Client
from hub.redis import client as redis_client
from hub.redis_safety import redis_safety

REDIS_TIMEOUT = 5.0

__all__ = ["Finding", "Severity", "diagnose"]


async def diagnose(settings: Settings) -> list[Finding]:
    """Every check, in order: Redis, then each delivering client (they need the registry)."""
    redis = redis_client(settings.redis_url)
    try:
        try:
            await asyncio.wait_for(redis.ping(), REDIS_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            return [Finding(f"redis {settings.redis_url}", Severity.FAIL, f"unreachable: {exc or 'timeout'}",
                            "start Redis or set RTHUB_REDIS_URL")]
        findings = [Finding(f"redis {settings.redis_url}", Severity.OK, "reachable")]
        findings += await check_redis_safety(redis, settings)
        findings += await check_keys(redis, settings)
        clients = await ClientRegistry(redis, settings).list_all()
        findings += await check_clients(clients, settings)
        return findings
    finally:
        await redis.aclose()


async def check_redis_safety(redis: Client, settings: Settings) -> list[Finding]:
    """Eviction, persistence and replica settings that would lose events, the registry or queued
    deliveries (`hub.redis_safety`, the same check the hub runs at start); a setting Redis hides is a
    warning, since the doctor cannot show it safe."""
    findings = []
    for problem in await redis_safety(redis):
        subject = f"redis {problem.node or settings.redis_url} {problem.setting}"
        severity = Severity.WARN if problem.unknown else Severity.FAIL
        findings.append(Finding(subject, severity, problem.line(), problem.fix))
    return findings or [Finding(f"redis {settings.redis_url}", Severity.OK, "no eviction, persistent, replicas safe")]
