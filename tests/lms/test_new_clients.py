"""Events the LMS sends through the plug-in right after a client was created reach it: the preemptive filter,
whose grants may predate the client, holds what it would drop until the interest version confirms no
change made it wanted. Real Redis, the real registry or `rthub serve`'s admin API, a real
`RealtimeBackend`; with the filter's change notices flowing, and cut (its pub/sub connection silenced
through a proxy, so only the hold's check can tell it of the new clients)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.keyfiles import home_env
from tests.lms.mute_proxy import MuteProxy
from tests.servers import RedisServer
from tests.waiting import wait_until

TRIALS = 40
EVENTS = 5
QUIET = 20.0  # once nothing new has arrived for this long, what is missing is missing
HUB_ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5"}


def _events(number: int) -> list[dict[str, Any]]:
    """Trial `number`'s events, from its own site (a grant on `sites` picks them)."""
    lms = SimulatedLMS(seed=number)
    events = [lms.next_event() for _ in range(EVENTS)]
    for event in events:
        event["context"]["host"] = f"trial-{number}.example"
    return events


def _started(url: str, prefix: str) -> RealtimeBackend:
    """A backend whose filter has loaded the grants (its probe, which no client wants, is held then dropped)."""
    backend = RealtimeBackend(redis_url=url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
    probe = SimulatedLMS(seed=1000).next_event()
    probe["context"]["host"] = "probe.example"
    backend.send(probe)
    wait_until(lambda: backend._filter.loaded, 10, "the filter never loaded")  # type: ignore[union-attr]
    return backend


def _settle(backend: RealtimeBackend, sent: int) -> None:
    """Every event has its outcome: written, or dropped for good (held events included)."""
    wait_until(lambda: backend.counts["published"] + backend.counts["unwanted"] == sent, 30,
               f"outcomes never settled: {backend.counts}")


def _in_stream(store: redis.Redis, prefix: str) -> dict[str, int]:
    """Stream entries per site."""
    sites: dict[str, int] = {}
    for _, fields in store.xrange(rkeys.stream_key(rkeys.Prefix(prefix))):
        site = orjson.loads(fields[b"e"])["context"].get("host", "")
        sites[site] = sites.get(site, 0) + 1
    return sites


@pytest.mark.parametrize("notices", ["notices", "notices cut"])
def test_events_sent_right_after_a_registry_create_all_reach_the_stream(
    redis_server: RedisServer, prefix: str, notices: str
) -> None:
    """40 clients created one after another, each followed at once by 5 of its events sent through the
    plug-in: all 200 written, and the probe nobody wants dropped."""
    proxy = MuteProxy(int(redis_server.url.rsplit(":", 1)[1].split("/")[0]))
    backend = _started(proxy.url, prefix)
    if notices == "notices cut":
        proxy.mute()
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix)

    async def trials() -> None:
        store = aioredis.Redis.from_url(redis_server.url)
        try:
            registry = ClientRegistry(store, settings)
            for number in range(TRIALS):
                await registry.create(name=f"trial {number}", type="enterprise", translator="xapi",
                                      grant=[{"sites": [f"trial-{number}.example"]}])
                for event in _events(number):  # as the LMS would, right after the creation was answered
                    backend.send(event)
        finally:
            await store.aclose()

    try:
        asyncio.run(trials())
        _settle(backend, 1 + TRIALS * EVENTS)
        written = _in_stream(redis_server.client(), prefix)
    finally:
        backend.close()
        proxy.close()
    missing = sum(EVENTS - written.get(f"trial-{number}.example", 0) for number in range(TRIALS))
    print(f"{notices}: {missing} of {TRIALS * EVENTS} events missing from the stream; counts {backend.counts}")
    assert missing == 0
    assert backend.counts["unwanted"] == 1 and "probe.example" not in written


def _received(receiver: Receiver) -> dict[str, set[str]]:
    """Cursors received per path (single and batch bodies)."""
    got: dict[str, set[str]] = {}
    for request in list(receiver.requests):
        try:
            body = request.json
        except orjson.JSONDecodeError:  # an attempt cut off by its timeout: retried
            continue
        frames = body["events"] if body["type"] == "batch" else [body]
        got.setdefault(request.path, set()).update(frame["cursor"] for frame in frames)
    return got


@pytest.mark.slow
@pytest.mark.parametrize("notices", ["notices", "notices cut"])
def test_events_sent_right_after_the_admin_api_created_a_webhook_client_all_reach_its_endpoint(
    redis_server: RedisServer, prefix: str, tmp_path: Path, notices: str
) -> None:
    """`rthub serve` in its own process; 40 webhook clients created through its admin API one after another,
    each 201 followed at once by 5 of the client's events sent through the plug-in: every client's endpoint
    gets its 5."""
    (tmp_path / "hub").mkdir()
    hub = HubProcess(redis_server.url, prefix, env={**home_env(tmp_path / "home"), **HUB_ENV}, cwd=tmp_path / "hub")
    hub.start()
    proxy = MuteProxy(int(redis_server.url.rsplit(":", 1)[1].split("/")[0]))
    admin = hub.token_for(*hub.client(name="ops", scopes=["admin"], grant=[]), scope="admin")
    api = httpx.Client(base_url=f"{hub.http}/admin/api", timeout=30, headers={"Authorization": f"Bearer {admin}"})
    backend = _started(proxy.url, prefix)
    if notices == "notices cut":
        proxy.mute()
    try:
        with Receiver() as receiver:
            for number in range(TRIALS):
                created = api.post("/clients", json={
                    "name": f"trial {number}", "type": "enterprise", "translator": "xapi", "delivery": "webhook",
                    "webhook_url": f"{receiver.url}/{number}", "grant": [{"sites": [f"trial-{number}.example"]}],
                    "webhook_batch_max": EVENTS,
                })
                assert created.status_code == 201, created.text
                for event in _events(number):
                    backend.send(event)
            _settle(backend, 1 + TRIALS * EVENTS)
            written = _in_stream(redis.Redis.from_url(redis_server.url), prefix)
            expected = {f"/hook/{n}": written.get(f"trial-{n}.example", 0) for n in range(TRIALS)}
            last = [-1, time.monotonic()]

            def settled() -> bool:
                got = sum(len(_received(receiver).get(path, ())) for path in expected)
                if got != last[0]:
                    last[:] = [got, time.monotonic()]
                return got == sum(expected.values()) or time.monotonic() - last[1] > QUIET

            wait_until(settled, 120, "deliveries never settled")
            received = _received(receiver)
    finally:
        backend.close()
        proxy.close()
        api.close()
        hub.stop()
    missing_stream = TRIALS * EVENTS - sum(expected.values())
    missing = sum(EVENTS - len(received.get(f"/hook/{n}", ())) for n in range(TRIALS))
    print(f"{notices}: {missing} of {TRIALS * EVENTS} events missing at the endpoints "
          f"({missing_stream} never written); counts {backend.counts}")
    assert (missing_stream, missing) == (0, 0)
