"""`verify` against webhooks a real hub signed and delivered: genuine ones pass, any tampering fails."""

from __future__ import annotations

import base64
import time

import pytest
import redis
from rthub_client import InvalidWebhook, verify, webhook_events

from rthub_lms import keys as rkeys
from tests.client.helpers import Load
from tests.hub.delivery.webhook.receiver import Receiver, Request
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import wait_until

HUB_ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2"}


def _deliveries(redis_server: RedisServer, prefix: str, count: int, batch: int) -> tuple[list[Request], str, list]:
    """Run a hub with one webhook client; return the requests its receiver got, the secret, and the cursors."""
    with Receiver() as receiver:
        hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
        client_id, _ = hub.client(delivery="webhook", webhook_url=receiver.url)
        stored = redis.Redis.from_url(redis_server.url)
        key = rkeys.client_key(rkeys.Prefix(prefix), client_id)
        stored.hset(key, mapping={"webhook_batch_max": batch, "webhook_batch_wait": 0.5 if batch > 1 else 0})
        secret = stored.hget(key, "webhook_secret").decode()
        stored.close()
        hub.start()
        try:
            with Load(redis_server.url, prefix, seed=95) as load:
                cursors = load.send(count)
            wait_until(lambda: sum(len(webhook_events(r.json)) for r in receiver.requests) >= count, 15,
                       "webhooks not delivered")
        finally:
            hub.stop()
        return list(receiver.requests), secret, cursors


def test_verify_accepts_the_hubs_signed_webhooks_and_refuses_tampered_ones(
    redis_server: RedisServer, prefix: str
) -> None:
    requests, secret, cursors = _deliveries(redis_server, prefix, 5, batch=1)
    payloads = [verify(r.body, r.headers, secret) for r in requests]
    assert [p["cursor"] for p in payloads] == cursors
    assert all(p["type"] == "event" and p["data"] for p in payloads)

    genuine = requests[0]
    other_secret = "whsec_" + base64.b64encode(b"another client's secret key!").decode()
    signature = genuine.headers["webhook-signature"]
    moved = str(int(genuine.headers["webhook-timestamp"]) - 1)
    flipped = signature[:-6] + ("A" if signature[-6] != "A" else "B") + signature[-5:]
    tampered = {
        "body changed": (genuine.body.replace(b'"event"', b'"evenT"'), genuine.headers, secret),
        "signature changed": (genuine.body, {**genuine.headers, "webhook-signature": flipped}, secret),
        "id changed": (genuine.body, {**genuine.headers, "webhook-id": "msg_0-0"}, secret),
        "timestamp changed": (genuine.body, {**genuine.headers, "webhook-timestamp": moved}, secret),
        "stale": (genuine.body, {**genuine.headers, "webhook-timestamp": str(int(time.time()) - 3600)}, secret),
        "wrong secret": (genuine.body, genuine.headers, other_secret),
        "no signature": (genuine.body, {k: v for k, v in genuine.headers.items() if k != "webhook-signature"}, secret),
        "garbled signature": (genuine.body, {**genuine.headers, "webhook-signature": "v1"}, secret),
    }
    for what, (body, headers, key) in tampered.items():
        with pytest.raises(InvalidWebhook):
            verify(body, headers, key)
            pytest.fail(f"accepted with the {what}")
    with pytest.raises(ValueError, match="whsec_"):
        verify(genuine.body, genuine.headers, "not a secret!")


def test_verify_and_webhook_events_unpack_a_signed_batch(redis_server: RedisServer, prefix: str) -> None:
    requests, secret, cursors = _deliveries(redis_server, prefix, 6, batch=3)
    events = [event for r in requests for event in webhook_events(verify(r.body, r.headers, secret))]
    assert any(r.json["type"] == "batch" for r in requests)
    assert [event["cursor"] for event in events] == cursors
