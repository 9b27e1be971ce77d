"""The SDK's token handling and typed refusals against real hubs: refresh before expiry, one refresh
after 4401, `Unauthorized` when that does not help, `Forbidden` on revocation (no reconnect loop)."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from rthub_client import Forbidden, Stream, Unauthorized

from tests.client.helpers import Consumer, Load, revoke_client, until
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer


def _restart(hub: HubProcess) -> None:
    hub.stop(signal.SIGTERM)
    hub.start()


def test_revoked_client_raises_forbidden_and_does_not_reconnect(
    hub: Hub, redis_server: RedisServer, prefix: str
) -> None:
    client_id, secret = hub.client()

    async def scenario(load: Load) -> tuple[Consumer, float, Stream]:
        consumer = Consumer(Stream(hub.http, client_id, secret))
        await until(lambda: consumer.stream.stats.connections == 1, 10, "connected")
        sent = load.send(3)
        await until(lambda: consumer.cursors == sent, 10, "three events")
        revoked_at = time.monotonic()
        await asyncio.to_thread(revoke_client, hub, client_id)
        with pytest.raises(Forbidden, match="4403"):
            await asyncio.wait_for(consumer.task, 10)
        took = time.monotonic() - revoked_at
        again = Stream(hub.http, client_id, secret)
        with pytest.raises(Unauthorized, match="invalid_client"):
            await anext(again)
        return consumer, took, again

    with Load(redis_server.url, prefix, seed=91) as load:
        consumer, took, again = asyncio.run(scenario(load))
    stats = consumer.stream.stats
    assert took < 2.0, "the hub closes a revoked client's sockets within a second"
    assert (stats.connections, stats.failed_connects, dict(stats.closes)) == (1, 0, {4403: 1})
    assert again.stats.connections == 0 and again.tokens.fetches == 0, "refused credentials never reach the socket"


@pytest.mark.slow
def test_token_is_refreshed_before_it_expires(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_TOKEN_LIFETIME": "2"})
    hub.start()
    client_id, secret = hub.client()

    async def scenario(load: Load) -> tuple[list[str], list[str], Stream]:
        consumer = Consumer(Stream(hub.http, client_id, secret))
        await until(lambda: consumer.stream.stats.connections == 1, 10, "connected")
        first_token = consumer.stream.tokens.current
        sent = load.send(3)
        await until(lambda: len(consumer.events) == 3, 10, "events on the first token")
        await asyncio.sleep(2.5)  # time passing: the connection outlives its token; a reconnect needs a new one
        await asyncio.to_thread(_restart, hub)
        # The token's expiry (4401) may already have cost one reconnect before the restart costs another.
        await until(lambda: consumer.stream.stats.connections >= 2, 20, "reconnected")
        assert consumer.stream.tokens.current != first_token
        sent += load.send(3)
        await until(lambda: len(consumer.events) == 6, 10, "events on the second token")
        await consumer.stop()
        return consumer.cursors, sent, consumer.stream

    try:
        with Load(redis_server.url, prefix, seed=92) as load:
            yielded, sent, stream = asyncio.run(scenario(load))
    finally:
        hub.stop()
    assert yielded == sent
    # The hub closes a socket when its token expires (4401 `token expired`); the SDK takes a new
    # token and reconnects from its cursor, so the expiry costs a reconnect, never an event.
    assert stream.tokens.fetches >= 2
    assert stream.stats.closes[4401] <= 1


@pytest.mark.hub_process
def test_a_refused_token_is_replaced_once(hub: HubProcess, redis_server: RedisServer, prefix: str) -> None:
    client_id, secret = hub.client()

    async def scenario(load: Load) -> tuple[list[str], list[str], Stream]:
        consumer = Consumer(Stream(hub.http, client_id, secret, resume_from=load.send(1)[0]))
        await until(lambda: consumer.stream.stats.connections == 1, 10, "connected")
        async with httpx.AsyncClient() as http:
            revoked = await http.post(
                f"{hub.http}/oauth/revoke", data={"token": consumer.stream.tokens.current}, auth=(client_id, secret)
            )
        assert revoked.status_code == 200, revoked.text
        await asyncio.to_thread(_restart, hub)
        sent = load.send(3)  # published while the stream reconnects
        await until(lambda: len(consumer.events) == 3, 20, "events after the refused token")
        await consumer.stop()
        return consumer.cursors, sent, consumer.stream

    with Load(redis_server.url, prefix, seed=93) as load:
        yielded, sent, stream = asyncio.run(scenario(load))
    assert yielded == sent
    assert stream.stats.closes[4401] == 1 and stream.tokens.fetches == 2 and stream.stats.connections == 2


def test_a_token_refused_again_after_a_refresh_raises_unauthorized(
    hub: Hub, redis_server: RedisServer, prefix: str
) -> None:
    other = HubProcess(redis_server.url, prefix)  # same registry and keys, another issuer
    other.start()
    client_id, secret = hub.client()

    async def scenario() -> Stream:
        stream = Stream(hub.http, client_id, secret, token_url=f"{other.http}/oauth/token")
        with pytest.raises(Unauthorized, match="4401"):
            await asyncio.wait_for(anext(stream), 20)
        return stream

    try:
        stream = asyncio.run(scenario())
    finally:
        other.stop()
    assert stream.tokens.fetches == 2 and dict(stream.stats.closes) == {4401: 2} and stream.stats.connections == 0
