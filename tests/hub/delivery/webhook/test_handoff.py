"""A websocket+webhook client that connects and closes again and again while the LMS publishes, on a real hub:
every event reaches it by one channel or the other, and webhooks arrive in cursor order."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import cursor_key
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.receiver import Receiver, Request
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until
from tests.wsclient import connect

CYCLES = 5
EVENTS = 300


@pytest.mark.slow
def test_connect_close_cycles_lose_nothing_and_keep_webhooks_in_order(redis_server: RedisServer, prefix: str) -> None:
    env = {
        "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5",
        "RTHUB_WEBHOOK_HANDOFF_MARGIN": "0.2",
    }
    hub = HubProcess(redis_server.url, prefix, env=env)
    hub.start()
    published: list[str] = []
    try:
        with Receiver() as receiver:
            client_id, secret = hub.client(delivery="websocket+webhook", webhook_url=receiver.url)
            token = hub.token_for(client_id, secret)
            # The hub routes the new client's webhooks once it has followed the registry change: a probe
            # event, delivered by webhook (no socket is open yet), shows that it has.
            writer = StreamWriter(redis.Redis.from_url(hub.redis_url), Settings(redis_prefix=prefix))
            probe = writer.write(normalise(SimulatedLMS(seed=76).next_event()))
            wait_until(lambda: any(r.json["cursor"] == probe for r in receiver.requests), 30,
                       "the hub never delivered the probe event to the new client's webhook")
            done = threading.Event()

            def lms() -> None:  # ~100 events/s for ~3 s, whatever the client does
                simulator = SimulatedLMS(seed=77)
                for _ in range(EVENTS):
                    published.append(writer.write(normalise(simulator.next_event())))
                    time.sleep(0.01)  # pacing
                done.set()

            async def cycles() -> list[str]:
                seen: list[str] = []
                for _ in range(CYCLES):
                    ws = await connect(hub.ws, token)
                    try:
                        async with asyncio.timeout(0.5):
                            while True:
                                frame = orjson.loads(await ws.recv())
                                if frame.get("type") == "event":
                                    seen.append(frame["cursor"])
                    except TimeoutError:
                        pass
                    await ws.close()
                    await asyncio.sleep(0.15)  # pacing: a spell with no socket, when webhooks take over
                return seen

            publisher = threading.Thread(target=lms)
            publisher.start()
            by_socket = asyncio.run(cycles())
            publisher.join()
            assert done.is_set()

            def after_probe() -> list[Request]:
                return [r for r in receiver.requests if r.json["cursor"] != probe]

            def by_webhook() -> list[str]:
                return [r.json["cursor"] for r in after_probe() if r.status == 200]

            wait_until(lambda: not set(published) - set(by_socket) - set(by_webhook()), 30,
                       "some events reached neither channel")
            time.sleep(1.0)  # not a wait for a condition: anything delivered twice would arrive now
            webhook = by_webhook()
            ids = [r.headers["webhook-id"] for r in after_probe()]
    finally:
        hub.stop()
    assert len(published) == EVENTS
    assert set(by_socket) | set(webhook) == set(published)
    orders = [cursor_key(cursor) for cursor in webhook]
    assert orders == sorted(orders) and len(set(webhook)) == len(webhook)  # in cursor order, each once
    assert ids == [f"msg_{cursor}" for cursor in webhook]
    assert by_socket and webhook  # both channels really carried events
    assert len(webhook) < len(published)  # what the sockets had (before the margin) was not sent again
    overlap = set(by_socket) & set(webhook)
    print(f"handoff figure: {len(published)} events, {len(by_socket)} by socket, {len(webhook)} by webhook, "
          f"{len(overlap)} on both (the {env['RTHUB_WEBHOOK_HANDOFF_MARGIN']} s margin)")
