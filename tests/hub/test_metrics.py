"""`/metrics`, `/healthz` and `/readyz` of a real hub, after real traffic."""

from __future__ import annotations

import asyncio

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from hub.dev.embedded import free_port
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub, InProcessHub
from tests.servers import RedisServer
from tests.waiting import wait_until
from tests.wsclient import collect, connect


def _samples(hub: Hub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{hub.http}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_the_hub_did(hub: Hub) -> None:
    token = hub.token(type="adaptive", grant=[{"courses": ["course-v1:MITx+*"]}])
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=71)
    events = [lms.next_event() for _ in range(30)]
    visible = sum(event["context"]["course_id"].startswith("course-v1:MITx+") for event in events)

    async def scenario() -> dict:
        ws = await connect(hub.ws, token)  # in the fan-out from its welcome on: live events are held for it
        for event in events:
            backend.send(event)
        await collect(ws, visible)
        samples = _samples(hub)
        await ws.close()
        return samples

    samples = asyncio.run(scenario())
    assert samples[("rthub_events_ingested_total", ())] == len(events)
    assert samples[("rthub_events_filtered_out_total", ())] == len(events) - visible
    assert samples[("rthub_events_translated_total", (("translator", "xapi"),))] == visible
    assert samples[("rthub_frames_delivered_total", (("channel", "websocket"),))] == visible
    assert samples[("rthub_delivery_latency_seconds_count", ())] == visible
    assert samples[("rthub_connections", (("consumer_type", "adaptive"),))] == 1
    live = rkeys.live_channel(rkeys.Prefix(hub.prefix))
    redis.Redis.from_url(hub.redis_url).publish(live, b"9999999999999-0\n{not json")
    dead: dict = {}

    def counted() -> bool:
        dead.update({k: v for k, v in _samples(hub).items() if k[0] == "rthub_events_dead_lettered_total"})
        return bool(dead)

    wait_until(counted, 10, "the bad entry was not counted")
    assert sum(dead.values()) == 1
    assert httpx.get(f"{hub.http}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{hub.http}/readyz").status_code == 200


def test_webhook_backlog_counts_what_waits_for_delivery(redis_server: RedisServer, prefix: str) -> None:
    """Events queued for an endpoint that does not answer (next attempt in an hour) are the backlog."""
    hub = InProcessHub(
        redis_server.url, prefix,
        env={"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "3600"},
    )
    hub.client(delivery="webhook", webhook_url=f"http://127.0.0.1:{free_port()}/closed", grant=[{}])
    hub.start()
    try:
        assert hub.metric("rthub_webhook_backlog") == 0
        backend = RealtimeBackend(
            redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT
        )
        lms = SimulatedLMS(seed=5)
        for _ in range(7):
            backend.send(lms.next_event())
        wait_until(lambda: hub.metric("rthub_webhook_failed_attempts_total") >= 1, 20, "no delivery was tried")
        wait_until(lambda: hub.metric("rthub_webhook_backlog") == 7, 20, "the backlog is not the 7 queued events")
    finally:
        hub.stop()
