"""Faults with real processes: Redis restarted under the hub, the hub killed under load, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until
from tests.wsclient import collect, connect, quiet


def _readyz(hub: Hub) -> int:
    try:
        return httpx.get(f"{hub.http}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


async def _until(predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `predicate` (blocking, so run in a thread) holds."""
    return await async_wait_until(lambda: asyncio.to_thread(predicate), timeout, f"{what} not reached")


def _seqs(frames: list[dict]) -> list[int]:
    return [f["seq"] for f in frames]


def test_redis_restart_under_the_hub_loses_nothing(own_redis: RedisServer, tmp_path: Path) -> None:
    prefix = "rr:"
    hub = HubProcess(own_redis.url, prefix)
    hub.start()
    token = hub.token()
    backend = RealtimeBackend(
        redis_url=own_redis.url, redis_prefix=prefix, preemptive=False, spool_path=str(tmp_path / "spool")
    , timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=70)
    sent: list[str] = []

    def publish(count: int) -> None:
        for _ in range(count):
            event = lms.next_event()
            sent.append(event["name"])
            backend.send(event)

    async def scenario() -> list[dict]:
        ws = await connect(hub.ws, token)
        publish(20)
        frames = await collect(ws, 20)
        own_redis.stop()
        await _until(lambda: _readyz(hub) == 503, 10, "/readyz 503 while Redis is down")
        publish(20)  # spooled by the LMS side
        refused = await asyncio.to_thread(
            httpx.post, f"{hub.http}/oauth/token", data={"grant_type": "client_credentials"}, auth=("a", "b")
        )
        assert refused.status_code == 503, refused.text
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await connect(hub.ws, token)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, "try again later"
        assert backend.counts["spooled"] == 20
        await asyncio.sleep(1.0)  # time passing: Redis stays down while the hub retries
        assert hub.process is not None and hub.process.poll() is None, "the hub must not exit"
        own_redis.start()
        await _until(lambda: _readyz(hub) == 200, 15, "/readyz 200 after Redis returns")
        publish(20)
        frames += await collect(ws, 40, timeout=30)
        frames += await quiet(ws, 0.5)
        second = await connect(hub.ws, await asyncio.to_thread(hub.token))
        publish(1)
        late = await collect(second, 1)
        await ws.close()
        await second.close()
        return frames + late

    try:
        frames = asyncio.run(scenario())
    finally:
        backend.close()
        hub.stop()
    stored = [cursor.decode() for cursor, _ in own_redis.client().xrange(rkeys.stream_key(rkeys.Prefix(prefix)))]
    assert [f["cursor"] for f in frames] == stored, "everything Redis holds, once, in stream order"
    assert len(stored) >= 61, "every event sent reached Redis (an ambiguous timeout may add a copy)"
    assert sorted(set(f["event_type"] for f in frames)) == sorted(set(sent))
    assert backend.counts["flushed"] == backend.counts["spooled"] >= 20


@pytest.mark.parametrize("takeover", ["restarted", "standby"])
def test_hub_killed_under_load_a_resuming_client_loses_nothing(
    redis_server: RedisServer, prefix: str, tmp_path: Path, takeover: str
) -> None:
    shared = {"RTHUB_DATA_DIR": str(tmp_path / "keys"), "RTHUB_ISSUER": "http://127.0.0.1"}
    first = HubProcess(redis_server.url, prefix, env=shared)
    first.start()
    token = first.token()
    second = first if takeover == "restarted" else HubProcess(redis_server.url, prefix, env=shared)
    if second is not first:
        second.start()
    backend = RealtimeBackend(redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=71)
    published: list[str | None] = []
    stop = threading.Event()

    def load() -> None:  # an LMS that keeps publishing whatever happens to the hub
        while not stop.is_set():
            published.append(backend.send(lms.next_event()))
            time.sleep(0.002)  # pacing

    async def scenario() -> list[dict]:
        ws = await connect(first.ws, token)
        publisher.start()
        frames = await collect(ws, 100)
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
        first.process.wait(10)
        if second is first:
            await asyncio.to_thread(first.start)
        await asyncio.sleep(0.3)  # time passing: the LMS carries on meanwhile
        ws = await connect(second.ws, token, {"type": "subscribe", "resume_from": frames[-1]["cursor"]})
        await asyncio.sleep(0.3)  # time passing: live events flow while the resume catches up
        stop.set()
        await asyncio.to_thread(publisher.join)
        frames += await collect(ws, len(published) - len(frames), timeout=30)
        frames += await quiet(ws, 0.3)
        await ws.close()
        return frames

    publisher = threading.Thread(target=load)
    try:
        frames = asyncio.run(scenario())
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join()
        for hub in {id(first): first, id(second): second}.values():
            hub.stop()
    assert None not in published
    assert [f["cursor"] for f in frames] == published, "every event once, in order, across the kill"


@pytest.mark.hub_process
def test_sigterm_drains_in_flight_requests_and_exits_cleanly(hub: HubProcess) -> None:
    client_id, secret = hub.client()

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=hub.http, timeout=20) as http:
            requests = [
                asyncio.create_task(
                    http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
                )
                for _ in range(8)
            ]
            # let them reach the hub before it is told to stop: requests in flight are not observable
            await asyncio.sleep(0.1)
            assert hub.process is not None
            hub.process.send_signal(signal.SIGTERM)
            return [(await request).status_code for request in requests]

    statuses = asyncio.run(scenario())
    assert hub.process is not None
    code = hub.process.wait(15)
    hub.process = None
    assert statuses == [200] * 8, "requests accepted before SIGTERM are answered"
    assert code in (0, -signal.SIGTERM), "a clean exit (uvicorn re-raises the signal it handled)"
