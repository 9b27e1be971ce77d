"""Driving a real hub for endpoint tests: the CLI, the admin API and page, publishing, expected output."""

from __future__ import annotations

import asyncio
import copy
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import Entry
from rthub_lms.backend import RealtimeBackend
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import renderer
from tests.hubproc import ROOT, Hub
from tests.waiting import wait_until

HUB_ENV = {
    "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true",
    "RTHUB_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.2", "0.5"] + ["1"] * 30),
}


def rthub(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `rthub` command line against the hub's Redis and key files."""
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], cwd=ROOT, env=hub.env, capture_output=True, text=True, timeout=60
    )


def publish_twice(hub: Hub, count: int, seed: int) -> list[Entry]:
    """Publish `count` simulated LMS events, each twice as an at-least-once LMS would; the first copies."""
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=2.0)
    lms = SimulatedLMS(seed=seed)
    firsts = []
    for _ in range(count):
        event = lms.next_event()
        cursor = backend.send(copy.deepcopy(event))
        assert backend.send(copy.deepcopy(event)) is not None
        if cursor is not None:
            firsts.append(Entry(cursor, normalise(event)))
    return firsts


def rendered(hub: Hub, entries: list[Entry], translator: str, consumer_type: str) -> list[dict[str, Any]]:
    """What the hub renders for these entries (same Redis, so the same anonymous actors), in order."""
    return rendered_with(hub.settings, entries, translator, consumer_type)


def rendered_with(
    settings: Settings, entries: list[Entry], translator: str, consumer_type: str
) -> list[dict[str, Any]]:
    """The records a hub with `settings` renders for these entries (its Redis: the same actors), in order."""

    async def render() -> list[dict[str, Any]]:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            render_one = renderer(redis, settings)
            found: list[dict[str, Any]] = []
            for entry in entries:
                frame = await render_one(entry, translator, consumer_type)
                if frame is not None:
                    data = orjson.loads(frame.text)["data"]
                    found += data if isinstance(data, list) else [data]
            return found
        finally:
            await redis.aclose()

    return asyncio.run(render())


def admin_token(hub: Hub) -> str:
    client_id, secret = hub.client(name="ops", scopes=["admin"])
    return hub.token_for(client_id, secret, scope="admin")


def api(hub: Hub, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{hub.http}/admin/api{path}", headers={"authorization": f"Bearer {token}"}, timeout=10, **kwargs
    )


def admin_page(hub: Hub, path: str, form: dict[str, str] | None = None) -> str:
    """Sign in to the admin page as a fresh admin client, then fetch `path` (or post `form` to it)."""
    client_id, secret = hub.client(name="page admin", scopes=["admin"])
    with httpx.Client(base_url=hub.http, timeout=10, follow_redirects=True) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/admin/").text)
        assert csrf is not None
        signed_in = browser.post(
            "/admin/login", data={"csrf": csrf.group(1), "client_id": client_id, "client_secret": secret}
        )
        assert "Signed in" in signed_in.text
        if form is None:
            return browser.get(f"/admin{path}").text
        session_csrf = re.search(r'name="csrf" value="([^"]+)"', signed_in.text)  # a new session, a new token
        assert session_csrf is not None
        return browser.post(f"/admin{path}", data={"csrf": session_csrf.group(1), **form}).text


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(predicate, timeout, f"timed out waiting for {what}")
