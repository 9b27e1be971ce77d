"""A webhook client gets every event published once its creation was answered, whatever routing was doing:
idle (noting the stream's newest cursor) or busy with another client's steady stream. Real Redis, the
real registry, routers following the stream, a real HTTP receiver; then the same with `rthub serve` in a
process of its own and clients created through its admin API."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.router import WebhookRouter
from hub.dev.simulator import SimulatedLMS
from hub.ingest.redis import RedisBroker
from rthub_lms.backend import StreamWriter
from rthub_lms.events import Event, normalise
from tests.hub.delivery.webhook.helpers import FAST, renderer, router_on, settings_for
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.keyfiles import home_env
from tests.servers import RedisServer
from tests.waiting import async_wait_until, wait_until

TRIALS = 40
EVENTS = 20
STAGGER = 0.025  # trials start 25 ms apart, so creations fall at every phase of routing's own rhythm
STEADY_BURST = 25  # every 50 ms: a router that reads a page while clients are created
OPTIONS = replace(FAST, lease_ttl_ms=3000, idle_tip_every=0.005)


def _event(lms: SimulatedLMS, site: str) -> Event:
    """A simulated event from `site` (a grant on `sites` picks one trial's events)."""
    event = normalise(lms.next_event())
    event["context"]["host"] = site
    return event


QUIET = 20.0


class Received:
    """Cursors received per path (one path per client), from single and batch bodies; each request is
    read once, so polling stays cheap however many arrived."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._read = 0
        self.cursors: dict[str, set[str]] = {}

    def update(self) -> dict[str, set[str]]:
        requests = self._receiver.requests[self._read:]
        self._read += len(requests)
        for request in requests:
            try:
                body = request.json
            except orjson.JSONDecodeError:  # an attempt cut off by its timeout (a loaded machine): retried
                continue
            frames = body["events"] if body["type"] == "batch" else [body]
            self.cursors.setdefault(request.path, set()).update(frame["cursor"] for frame in frames)
        return self.cursors


async def _trial(  # type: ignore[no-untyped-def]
    redis: aioredis.Redis, settings, receiver: Receiver, number: int, stagger: float = STAGGER
) -> tuple[str, list[str]]:
    """Create a client as the admin API does, then publish at once: (its receiver path, the cursors it must get)."""
    await asyncio.sleep(number * stagger)
    site = f"trial-{number}.example"
    await ClientRegistry(redis, settings).create(
        name=f"trial {number}", type="enterprise", translator="xapi", delivery="webhook",
        webhook_url=f"{receiver.url}/{number}", grant=[{"sites": [site]}], webhook_batch_max=EVENTS,
    )
    broker, lms = RedisBroker(redis, settings), SimulatedLMS(seed=number)
    return f"/hook/{number}", [await broker.publish(_event(lms, site)) for _ in range(EVENTS)]


async def _missing(received: Received, trials: list[tuple[str, list[str]]]) -> int:
    """Events not received once deliveries settle (every trial complete, or QUIET s with nothing new:
    long enough that a loaded machine's slow start is not taken for the end)."""
    expected = {path: set(cursors) for path, cursors in trials}
    loop = asyncio.get_running_loop()

    def missing() -> int:
        got = received.update()
        return sum(len(cursors - got.get(path, set())) for path, cursors in expected.items())

    last = (missing(), loop.time())

    def settled() -> bool:
        nonlocal last
        now = missing()
        if now != last[0]:
            last = (now, loop.time())
        return now == 0 or loop.time() - last[1] > QUIET

    await async_wait_until(settled, 90)
    return missing()


def test_new_clients_of_an_idle_router_get_every_event_published_after_their_creation(
    redis_server: RedisServer, prefix: str
) -> None:
    """40 routers each with nothing to route (so each notes the stream's tip), one new client each."""
    with Receiver() as receiver:

        async def scenario() -> int:
            clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(TRIALS)]
            settings = [settings_for(redis_server.url, f"{prefix}{n}:") for n in range(TRIALS)]
            routers = [router_on(clients[n], settings[n], OPTIONS) for n in range(TRIALS)]
            for router in routers:
                await router.start()
                router.follow()
            try:
                trials = await asyncio.gather(
                    *(_trial(clients[n], settings[n], receiver, n) for n in range(TRIALS))
                )
                return await _missing(Received(receiver), trials)
            finally:
                await asyncio.gather(*(router.close() for router in routers))
                await asyncio.gather(*(client.aclose() for client in clients))

        missing = asyncio.run(scenario())
    print(f"idle router: {missing} of {TRIALS * EVENTS} events missing")
    assert missing == 0


def test_new_clients_of_a_busy_router_get_every_event_published_after_their_creation(
    redis_server: RedisServer, prefix: str
) -> None:
    """One router busy with another client's steady stream while 40 clients are created."""
    with Receiver() as receiver:

        async def scenario() -> tuple[int, int]:
            async with _busy_router(redis_server.url, prefix, receiver) as (redis, settings, router, received):
                # All at once: the router learns of the clients one notice after another while it reads on.
                trials = await asyncio.gather(*(_trial(redis, settings, receiver, n, 0) for n in range(TRIALS)))
                return await _missing(received, trials), router.counts["routed"]

        missing, routed = asyncio.run(scenario())
    print(f"busy router ({routed} entries routed): {missing} of {TRIALS * EVENTS} events missing")
    assert missing == 0


@pytest.mark.slow
def test_new_clients_of_a_busy_router_that_learns_of_them_late_get_every_event_published_after_their_creation(
    own_redis: RedisServer, prefix: str
) -> None:
    """The window between a creation and the router learning of it, widened: before each of 40 creations
    the router's change notices are cut (its subscription killed, as a network blip or a Redis failover
    does), so it reads on through the new client's events, busy with another client's stream, until it
    resubscribes and reloads the registry."""
    with Receiver() as receiver:

        async def scenario() -> int:
            async with _busy_router(own_redis.url, prefix, receiver) as (redis, settings, _, received):
                trials = []
                for number in range(TRIALS):
                    await redis.client_kill_filter(_type="pubsub")
                    trials.append(await _trial(redis, settings, receiver, number, 0))
                return await _missing(received, trials)

        missing = asyncio.run(scenario())
    print(f"busy router learning late: {missing} of {TRIALS * EVENTS} events missing")
    assert missing == 0


def test_a_client_created_while_routing_lags_gets_nothing_published_before_its_creation(
    redis_server: RedisServer, prefix: str
) -> None:
    """Routing behind the stream (no router ran while 10 events were published): a client created then
    gets the events after its creation and none of the backlog routing still has to read. Found by the
    fault soak (bench/soak): a client created after a hub's SIGKILL got events 4 s older than itself."""
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], list[str], set[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            registry = ClientRegistry(redis, settings)
            broker, lms = RedisBroker(redis, settings), SimulatedLMS(seed=5)

            async def publish(count: int) -> list[str]:
                return [await broker.publish(_event(lms, "lag.example")) for _ in range(count)]

            async def create(name: str) -> None:
                await registry.create(name=name, type="enterprise", translator="xapi", delivery="webhook",
                                      webhook_url=f"{receiver.url}/{name}", grant=[{"sites": ["lag.example"]}])

            received = Received(receiver)
            await create("first")
            router = router_on(redis, settings, OPTIONS)
            await router.start()
            router.follow()
            try:
                first = await publish(1)
                await async_wait_until(lambda: set(first) <= received.update().get("/hook/first", set()), 10)
            finally:
                await router.close()  # routing stops: its saved position stays at the first event
            backlog = await publish(10)
            await create("late")
            after = await publish(10)
            router = router_on(redis, settings, OPTIONS)
            await router.start()
            router.follow()
            try:  # each client's deliveries keep cursor order: once the last one is in, so is anything before
                await async_wait_until(lambda: after[-1] in received.update().get("/hook/late", set()), 20)
                await async_wait_until(lambda: backlog[-1] in received.update().get("/hook/first", set()), 20)
            finally:
                await router.close()
                await redis.aclose()
            return backlog, after, received.update()["/hook/late"]

        backlog, after, late = asyncio.run(scenario())
    assert not late & set(backlog), f"{len(late & set(backlog))} events published before the client was created"
    assert late == set(after)


def test_a_grant_widened_while_routing_lags_applies_to_events_published_after_the_change_only(
    redis_server: RedisServer, prefix: str
) -> None:
    """A router held in the middle of a page (its render waits) while the client's grant is widened from
    one site to two: the events of the new site published before the change are not delivered, those of
    the old site are, and both sites' events after the change are. Found by the fault soak: a widened
    client got events published 150 ms before its change, which its grant then did not allow."""
    with Receiver() as receiver:

        async def scenario() -> tuple[list[str], list[str], list[str], set[str]]:
            redis = aioredis.Redis.from_url(redis_server.url)
            settings = settings_for(redis_server.url, prefix)
            registry = ClientRegistry(redis, settings)
            broker, lms = RedisBroker(redis, settings), SimulatedLMS(seed=6)
            gate, held = asyncio.Event(), asyncio.Event()
            gate.set()
            real = renderer(redis, settings)

            async def render(entry, translator: str, consumer_type: str):  # type: ignore[no-untyped-def]
                if not gate.is_set():
                    held.set()
                    await gate.wait()
                return await real(entry, translator, consumer_type)

            async def publish(site: str, count: int) -> list[str]:
                return [await broker.publish(_event(lms, site)) for _ in range(count)]

            client, _ = await registry.create(
                name="widened", type="enterprise", translator="xapi", delivery="webhook",
                webhook_url=f"{receiver.url}/widened", grant=[{"sites": ["old.example"]}])
            received = Received(receiver)
            router = router_on(redis, settings, OPTIONS, render=render)
            await router.start()
            router.follow()
            try:
                first = await publish("old.example", 1)
                await async_wait_until(lambda: set(first) <= received.update().get("/hook/widened", set()), 10)
                gate.clear()
                old_before = []
                new_before = []
                for _ in range(5):
                    old_before += await publish("old.example", 1)
                    new_before += await publish("new.example", 1)
                await async_wait_until(held.is_set, 10)  # routing is held on the first of them
                changed = await registry.update(client.client_id, grant=[{"sites": ["old.example", "new.example"]}])
                await async_wait_until(
                    lambda: router.clients[client.client_id].routed_from == changed.routed_from, 10)
                after = await publish("old.example", 3) + await publish("new.example", 3)
                gate.set()
                await async_wait_until(lambda: after[-1] in received.update().get("/hook/widened", set()), 20)
            finally:
                await router.close()
                await redis.aclose()
            return old_before, new_before, after, received.update()["/hook/widened"]

        old_before, new_before, after, got = asyncio.run(scenario())
    assert not got & set(new_before), f"{len(got & set(new_before))} events the grant did not allow when published"
    assert set(old_before) | set(after) <= got


# The same trials with real processes as an operator runs them: `rthub serve` in a working directory of its
# own, each client created through the admin API, its events written to the stream the moment the API
# answered 201 (as the LMS's plug-in writes them), a hub in its own process routing them.

HUB_ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5"}


class _Operator:
    """The admin API of one hub and a stream writer on its Redis."""

    def __init__(self, hub: HubProcess) -> None:
        admin = hub.token_for(*hub.client(name="ops", scopes=["admin"], grant=[]), scope="admin")
        self.api = httpx.Client(base_url=f"{hub.http}/admin/api", timeout=30,
                                headers={"Authorization": f"Bearer {admin}"})
        self.redis = redis.Redis.from_url(hub.redis_url)
        self.writer = StreamWriter(self.redis, hub.settings)

    def create_then_publish(self, receiver: Receiver, number: int) -> tuple[str, str, list[str]]:
        """(client id, receiver path, cursors): the client's 20 events are written once the API answered."""
        site = f"trial-{number}.example"
        created = self.api.post("/clients", json={
            "name": f"trial {number}", "type": "enterprise", "translator": "xapi", "delivery": "webhook",
            "webhook_url": f"{receiver.url}/{number}", "grant": [{"sites": [site]}], "webhook_batch_max": EVENTS,
        })
        assert created.status_code == 201, created.text
        lms = SimulatedLMS(seed=number)
        cursors = self.writer.write_many([_event(lms, site) for _ in range(EVENTS)])
        return created.json()["client_id"], f"/hook/{number}", cursors

    def close(self) -> None:
        self.api.close()
        self.redis.close()


def _missing_now(received: Received, trials: list[tuple[str, str, list[str]]]) -> int:
    got = received.update()
    return sum(len(set(cursors) - got.get(path, set())) for _, path, cursors in trials)


def _settle(received: Received, trials: list[tuple[str, str, list[str]]]) -> int:
    """Events still missing once every trial is complete, or after QUIET s with nothing new arriving."""
    last = [_missing_now(received, trials), time.monotonic()]

    def settled() -> bool:
        now = _missing_now(received, trials)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return now == 0 or time.monotonic() - last[1] > QUIET

    wait_until(settled, 120, "deliveries never settled")
    return _missing_now(received, trials)


@pytest.mark.slow
def test_clients_created_through_the_api_of_an_idle_hub_get_every_event_written_after_the_201(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """40 trials one after another, each on a hub with no other webhook client (the previous trial's client
    is deleted once served), so every creation meets a router noting the stream's tip."""
    hub = HubProcess(redis_server.url, prefix, env={**home_env(tmp_path / "home"), **HUB_ENV}, cwd=tmp_path / "hub")
    (tmp_path / "hub").mkdir()
    hub.start()
    operator = _Operator(hub)
    trials = []
    try:
        with Receiver() as receiver:
            received = Received(receiver)
            for number in range(TRIALS):
                trial = operator.create_then_publish(receiver, number)
                trials.append(trial)
                missing = _settle(received, [trial])
                assert operator.api.delete(f"/clients/{trial[0]}").status_code == 204
                if missing:
                    break
            missing = _missing_now(received, trials)
    finally:
        operator.close()
        hub.stop()
    print(f"idle hub: {missing} of {len(trials) * EVENTS} events missing")
    assert (len(trials), missing) == (TRIALS, 0)


@pytest.mark.slow
def test_clients_created_through_the_api_of_a_busy_hub_get_every_event_written_after_the_201(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """40 clients created at once through the API of a hub routing another client's steady stream."""
    hub = HubProcess(redis_server.url, prefix, env={**home_env(tmp_path / "home"), **HUB_ENV}, cwd=tmp_path / "hub")
    (tmp_path / "hub").mkdir()
    hub.start()
    operator = _Operator(hub)
    stop = threading.Event()

    def steady(writer: StreamWriter) -> None:
        lms = SimulatedLMS(seed=99)
        while not stop.wait(0.05):
            writer.write_many([_event(lms, "steady.example") for _ in range(STEADY_BURST)])

    try:
        with Receiver() as receiver:
            received = Received(receiver)
            assert operator.api.post("/clients", json={
                "name": "steady", "type": "enterprise", "translator": "xapi", "delivery": "webhook",
                "webhook_url": f"{receiver.url}/steady", "grant": [{"sites": ["steady.example"]}],
                "webhook_batch_max": 100,
            }).status_code == 201
            steady_redis = redis.Redis.from_url(redis_server.url)
            writer = threading.Thread(target=steady, args=(StreamWriter(steady_redis, hub.settings),))
            writer.start()
            try:
                wait_until(lambda: "/hook/steady" in received.update(), 20, "the steady client got nothing")
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    trials = list(pool.map(lambda n: operator.create_then_publish(receiver, n), range(TRIALS)))
                missing = _settle(received, trials)
            finally:
                stop.set()
                writer.join()
                steady_redis.close()
    finally:
        operator.close()
        hub.stop()
    print(f"busy hub: {missing} of {TRIALS * EVENTS} events missing")
    assert missing == 0


async def _steady(redis: aioredis.Redis, settings: Settings) -> None:
    """Another client's stream: `STEADY_BURST` events from `steady.example` every 50 ms, until cancelled."""
    broker, lms = RedisBroker(redis, settings), SimulatedLMS(seed=99)
    while True:
        await asyncio.gather(*(broker.publish(_event(lms, "steady.example")) for _ in range(STEADY_BURST)))
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _busy_router(
    redis_url: str, prefix: str, receiver: Receiver
) -> AsyncIterator[tuple[aioredis.Redis, Settings, WebhookRouter, Received]]:
    """A router following the stream, busy with the `steady` client's stream (its first delivery seen)."""
    redis = aioredis.Redis.from_url(redis_url)
    settings = settings_for(redis_url, prefix)
    await ClientRegistry(redis, settings).create(
        name="steady", type="enterprise", translator="xapi", delivery="webhook",
        webhook_url=f"{receiver.url}/steady", grant=[{"sites": ["steady.example"]}], webhook_batch_max=100,
    )
    router: WebhookRouter = router_on(redis, settings, OPTIONS)
    await router.start()
    router.follow()
    stream = asyncio.create_task(_steady(redis, settings))
    try:
        received = Received(receiver)
        await async_wait_until(lambda: "/hook/steady" in received.update(), 10)
        yield redis, settings, router, received
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
        await router.close()
        await redis.aclose()
