"""A consumer that stops reading is closed by the hub with 4008; the SDK resumes and loses nothing."""

from __future__ import annotations

import asyncio
import random

import httpx
from rthub_client import Event, Stream

from tests.client.helpers import Load, until
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer

BURST = 1500  # ~6.5 MB compressed: more than the kernel buffers between hub and client hold


def _hub_connections(hub: Hub) -> float:
    """Live sockets on the hub, from its Prometheus endpoint."""
    metrics = httpx.get(f"{hub.http}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("rthub_connections{"))


def _send_large(load: Load, count: int) -> list[str | None]:
    """problem_check events carrying 8 KB of random hex: compressed frames still fill the kernel buffers."""
    cursors: list[str | None] = []
    while len(cursors) < count:
        event = load.lms.next_event()
        if event["name"] == "problem_check":
            submission = next(iter(event["data"]["submission"].values()))
            submission["question"], submission["answer"] = random.randbytes(2000).hex(), random.randbytes(2000).hex()
            cursors.append(load.backend.send(event))
    load.published += cursors
    return cursors


def test_slow_consumer_close_resumes_without_loss(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_SEND_QUEUE_SIZE": "16"})
    hub.start()
    client_id, secret = hub.client()

    async def scenario(load: Load) -> tuple[list[str], list[str | None], Stream]:
        stream = Stream(hub.http, client_id, secret, resume_from=load.send(1)[0])
        events: list[Event] = []
        stalled = asyncio.Event()
        resume = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                events.append(event)
                if len(events) == 1:
                    stalled.set()
                    await resume.wait()  # the consumer stops reading while the LMS bursts

        task = asyncio.create_task(consume())
        sent = list(load.send(1))  # the one the consumer gets stuck on
        await asyncio.wait_for(stalled.wait(), 10)
        sent += await asyncio.to_thread(_send_large, load, BURST)
        await until(lambda: _hub_connections(hub) == 0, 60, "the hub dropping the stalled socket")
        resume.set()
        await until(lambda: len(events) >= len(sent), 60, "every event after the resume")
        await asyncio.sleep(0.3)  # a window: a duplicate would arrive now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
        return [event.cursor for event in events], sent, stream

    try:
        with Load(redis_server.url, prefix, seed=94) as load:
            yielded, sent, stream = asyncio.run(scenario(load))
    finally:
        hub.stop()
    assert None not in sent
    assert yielded == sent, "every event once, in order, across the 4008 close"
    assert stream.stats.closes[4008] == 1 and stream.stats.connections == 2, stream.stats
