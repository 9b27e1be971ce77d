"""Deleting a client through the admin API of a real hub leaves no key of it behind."""

from __future__ import annotations

import asyncio

import httpx
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from rthub_lms.keys import outbox
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until
from tests.wsclient import connect


def test_deleting_a_client_removes_its_queues_state_presence_and_health(redis_server: RedisServer, prefix: str) -> None:
    env = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "30"}
    hub = HubProcess(redis_server.url, prefix, env=env)
    hub.start()
    check = redis.Redis.from_url(redis_server.url)

    def keys_of(client_id: str) -> list[bytes]:
        return sorted(check.scan_iter(match=f"{prefix}*{client_id}*"))

    try:
        with Receiver() as receiver:
            client_id, secret = hub.client(delivery="websocket+webhook", webhook_url=receiver.url)
            admin = hub.token_for(*hub.client(name="admin", scopes=["admin"], grant=[]), scope="admin")
            until_delivering(hub, client_id)

            async def delete_while_connected() -> tuple[list[bytes], int, list[bytes]]:
                ws = await connect(hub.ws, hub.token_for(client_id, secret))
                writer = StreamWriter(check, Settings(redis_prefix=prefix))
                simulator = SimulatedLMS(seed=8)
                writer.write_many([normalise(simulator.next_event()) for _ in range(5)])
                held = {"client", "outbox", "wh", "presence", "presence-state"}
                await async_wait_until(  # queued in the outbox, held while the socket is live
                    lambda: held <= {_name(key.decode().removeprefix(prefix)) for key in keys_of(client_id)}
                    and check.xlen(outbox(Settings(redis_prefix=prefix), client_id)) == 5,
                    20, "the events were not queued and held for the live socket")
                before = keys_of(client_id)
                async with httpx.AsyncClient() as http:
                    deleted = await http.delete(
                        f"{hub.http}/admin/api/clients/{client_id}", headers={"Authorization": f"Bearer {admin}"}
                    )
                await async_wait_until(lambda: ws.close_code is not None, 20, "the deleted client's socket stayed open")
                await asyncio.sleep(0.5)  # a window: a key the client's worker wrote after the delete would show by now
                await ws.close()
                return before, deleted.status_code, keys_of(client_id)

            before, status, after = asyncio.run(delete_while_connected())
    finally:
        hub.stop()
        check.close()
    names = {_name(key.decode().removeprefix(prefix)) for key in before}
    assert {"client", "outbox", "wh", "presence", "presence-state"} <= names
    assert status == 204
    assert after == []


def _name(key: str) -> str:
    """`{client}:outbox` -> `outbox`, `{registry}:client:<id>` -> `client` (keys carry a hash tag)."""
    if key.startswith("{"):
        key = key.split("}:", 1)[1]
    return key.split(":")[0]
