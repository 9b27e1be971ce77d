"""Redis that answers but refuses writes (OOM under `noeviction`, READONLY after a failover) under a real
hub: nothing is dead-lettered for it, and socket and webhook delivery resume when writes are accepted."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.helpers import (
    Publisher,
    router_on,
    settings_for,
    until,
    until_delivering,
    write_client,
)
from tests.hub.delivery.webhook.receiver import Receiver, Reply
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



def _posts_while_redis_refuses(
    server: RedisServer, prefix: str, refuse: Callable[[redis.Redis], None], accept: Callable[[redis.Redis], None]
) -> tuple[int, int, int]:
    """One event to a receiver whose 200 comes once `refuse` has made Redis refuse the writes that follow it
    (the delivery log, the acknowledgement, the lease); `accept` undoes it once Redis has refused 10 commands
    or the event is acknowledged. Returns (POSTs received, acknowledgements retried, events recorded delivered)."""
    control = server.client()
    refused = threading.Event()
    errors_before = [0]

    def errors() -> int:
        return sum(int(row.get("count", 0)) for row in control.info("errorstats").values())

    def refusals() -> int:
        return errors() - errors_before[0]

    def refuse_then_answer(number: int) -> Reply:
        if number == 0:
            errors_before[0] = errors()
            refuse(control)
            refused.set()
        return Reply(200)

    with Receiver(refuse_then_answer) as receiver:

        async def scenario() -> tuple[int, int, int]:
            redis = aioredis.Redis.from_url(server.url)
            settings = settings_for(server.url, prefix)
            await write_client(redis, settings, "acme", receiver.url)
            router = router_on(redis, settings)
            await router.start()
            [entry] = await Publisher(redis, settings).entries(1)
            await router.route(entry)
            outbox = rkeys.outbox(settings, "acme")
            await until(lambda: refused.is_set(), 10)
            await until(lambda: refusals() >= 10 or control.xlen(outbox) == 0, 30)
            accept(control)
            await until(lambda: control.xlen(outbox) == 0, 30)
            ack_retries = router.workers["acme"].counts["ack_retries"]
            delivered = int(control.hget(rkeys.health(settings, "acme"), "delivered") or 0)
            await router.close()
            await redis.aclose()
            return len(receiver.requests), ack_retries, delivered

        try:
            return asyncio.run(scenario())
        finally:
            control.close()


def test_a_2xx_while_redis_is_out_of_memory_is_not_posted_again(own_redis: RedisServer, prefix: str) -> None:
    """Redis at `maxmemory` under `noeviction` (another writer filled it) when the receiver answers 200:
    the delivery log and the lease writes are refused; the event is acknowledged, not posted again."""

    def fill(control: redis.Redis) -> None:
        control.config_set("maxmemory-policy", "noeviction")
        control.rpush(f"{prefix}filler", *[b"x" * 100_000] * 40)
        control.config_set("maxmemory", control.info("memory")["used_memory"] - 2_000_000)

    def free(control: redis.Redis) -> None:
        control.delete(f"{prefix}filler")
        control.config_set("maxmemory", "0")

    posts, _, delivered = _posts_while_redis_refuses(own_redis, prefix, fill, free)
    assert (posts, delivered) == (1, 1), f"{posts} POSTs for one event"


def test_a_refused_acknowledgement_is_retried_without_posting_again(own_redis: RedisServer, prefix: str) -> None:
    """Redis refuses the acknowledgement itself (here the ACL denies its XDEL) after the receiver's 200:
    it is retried until Redis takes it, and the event is not posted again."""

    def deny(control: redis.Redis) -> None:
        control.acl_setuser("default", enabled=True, nopass=True, commands=["+@all", "-xdel"], keys=["*"],
                            channels=["*"])

    def allow(control: redis.Redis) -> None:
        control.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"], keys=["*"], channels=["*"])

    posts, ack_retries, delivered = _posts_while_redis_refuses(own_redis, prefix, deny, allow)
    assert (posts, delivered) == (1, 1), f"{posts} POSTs for one event"
    assert ack_retries > 0
