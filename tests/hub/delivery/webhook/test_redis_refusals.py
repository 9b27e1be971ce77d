"""Redis that answers but refuses writes (OOM under `noeviction`, READONLY after a failover) under a real
hub: nothing is dead-lettered for it, and socket and webhook delivery resume when writes are accepted."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until
from tests.wsclient import connect

ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5"}


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(predicate, timeout, f"{what} not reached")


def _retries(hub: HubProcess) -> float:
    """Writes the hub met refused and retried, routing webhooks or dispatching."""
    return hub.metric("rthub_webhook_route_retries_total") + hub.metric("rthub_dispatch_retries_total")


def _scenario(
    writer_redis: redis.Redis, hub: HubProcess, refuse: Callable[[], None], accept: Callable[[], None]
) -> tuple[list[str], list[str], list[str], str]:
    """Publish while the hub is paused, make Redis refuse writes, resume the hub, then accept writes.

    Returns (published cursors, webhook deliveries, socket deliveries, the webhook client's id)."""
    writer = StreamWriter(writer_redis, Settings(redis_prefix=hub.prefix))
    simulator = SimulatedLMS(seed=31)
    with Receiver() as receiver:
        client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
        token = hub.token()
        until_delivering(hub, client_id)

        async def run() -> tuple[list[str], list[str]]:
            ws = await connect(hub.ws, token)
            published = writer.write_many([normalise(simulator.next_event()) for _ in range(5)])
            seen = []
            while len(seen) < 5:
                seen.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["cursor"])
            assert hub.process is not None
            hub.process.send_signal(signal.SIGSTOP)  # new events arrive while writes are refused
            published += writer.write_many([normalise(simulator.next_event()) for _ in range(20)])
            refuse()
            hub.process.send_signal(signal.SIGCONT)
            await asyncio.sleep(2.0)  # time passing: writes stay refused long enough for a hub that gives up to show it
            accept()
            while len(seen) < 25:
                seen.append(orjson.loads(await asyncio.wait_for(ws.recv(), 30))["cursor"])
            await ws.close()
            return published, seen

        published, by_socket = asyncio.run(run())
        _wait(lambda: len({r.json["cursor"] for r in receiver.requests if r.status == 200}) == 25, 30, "webhooks")
        by_webhook = [r.json["cursor"] for r in receiver.requests if r.status == 200]
    return published, list(dict.fromkeys(by_webhook)), by_socket, client_id


@pytest.mark.slow
def test_oom_under_noeviction_is_waited_out(own_redis: RedisServer, prefix: str) -> None:
    hub = HubProcess(own_redis.url, prefix, env=ENV)
    hub.start()
    control = own_redis.client()
    try:
        control.config_set("maxmemory-policy", "noeviction")
        published, by_webhook, by_socket, client_id = _scenario(
            control, hub, lambda: control.config_set("maxmemory", "1"), lambda: control.config_set("maxmemory", "0")
        )
        retries = _retries(hub)
        errors = hub.metric("rthub_dispatch_errors_total")
        ingest_dead = control.xlen(rkeys.ingest_deadletters_key(hub.settings))
        webhook_dead = control.xlen(rkeys.deadletters(hub.settings, client_id))
    finally:
        hub.stop()
        control.close()
    assert by_webhook == published and by_socket == published
    assert retries > 0  # the refusals really happened, and were waited out
    assert (errors, ingest_dead, webhook_dead) == (0, 0, 0)


@pytest.mark.slow
def test_readonly_after_a_failover_is_waited_out(own_redis: RedisServer, prefix: str, tmp_path: Path) -> None:
    """The hub's Redis becomes a replica of a promoted peer (READONLY), then is promoted back."""
    peer = RedisServer(tmp_path / "peer")
    peer.start()
    hub = HubProcess(own_redis.url, prefix, env=ENV)
    hub.start()
    control, other = own_redis.client(), peer.client()

    def synced(server: redis.Redis) -> bool:
        return server.info("replication").get("master_link_status") == "up"

    def fail_over() -> None:
        other.execute_command("REPLICAOF", "127.0.0.1", str(own_redis.port))
        _wait(lambda: synced(other) and other.dbsize() == control.dbsize(), 20, "peer in sync")
        other.execute_command("REPLICAOF", "NO", "ONE")
        control.execute_command("REPLICAOF", "127.0.0.1", str(peer.port))
        _wait(lambda: synced(control), 20, "the hub's Redis following the peer")

    def fail_back() -> None:
        control.execute_command("REPLICAOF", "NO", "ONE")

    try:
        published, by_webhook, by_socket, client_id = _scenario(control, hub, fail_over, fail_back)
        retries = _retries(hub)
        errors = hub.metric("rthub_dispatch_errors_total")
        ingest_dead = control.xlen(rkeys.ingest_deadletters_key(hub.settings))
        webhook_dead = control.xlen(rkeys.deadletters(hub.settings, client_id))
    finally:
        hub.stop()
        control.close()
        other.close()
        peer.stop(kill=True)
    assert by_webhook == published and by_socket == published
    assert retries > 0
    assert (errors, ingest_dead, webhook_dead) == (0, 0, 0)
