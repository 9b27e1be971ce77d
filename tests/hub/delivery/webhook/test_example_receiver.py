"""examples/webhook_receiver.py against real deliveries: verifies, de-duplicates, refuses forgeries."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from types import ModuleType

import httpx
import orjson
import redis.asyncio as aioredis

from hub.delivery.webhook.signing import Signer, new_secret
from tests import ROOT
from tests.hub.delivery.webhook.helpers import Publisher, router_on, settings_for, until, write_client
from tests.servers import RedisServer

EXAMPLE = ROOT / "examples" / "webhook_receiver.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_receiver_accepts_deliveries_once_and_refuses_forgeries(redis_server: RedisServer, prefix: str) -> None:
    secret = new_secret()
    handled: list[dict] = []
    server = _example().make_server(secret, 0, handled.append)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def scenario() -> list[str]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            await write_client(redis, settings, "acme", url, secret=secret)
            router = router_on(redis, settings)
            await router.start()
            entries = await Publisher(redis, settings).entries(3)
            for entry in entries:
                await router.route(entry)
            await until(lambda: len(handled) == 3)
            await router.close()
            await redis.aclose()
            return [entry.cursor for entry in entries]

        cursors = asyncio.run(scenario())
        body = orjson.dumps({"type": "event", "cursor": cursors[0], "event_type": "x", "data": {}}).decode()
        again = Signer(secret).headers(f"msg_{cursors[0]}", body, time.time())
        assert httpx.post(url, content=body, headers=again).status_code == 200
        forged = Signer(new_secret()).headers("msg_forged", body, time.time())
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        stale = Signer(secret).headers("msg_stale", body, time.time() - 3600)
        assert httpx.post(url, content=body, headers=stale).status_code == 401
    finally:
        server.shutdown()
        server.server_close()
    assert [event["cursor"] for event in handled] == cursors
