"""Caliper into a Caliper endpoint through a real hub: a receiver checks envelope, key and every event id."""

from __future__ import annotations

import re
import time
from datetime import datetime

from tests.hub.delivery.webhook.formats.helpers import (
    HUB_ENV,
    admin_page,
    admin_token,
    api,
    publish_twice,
    rendered,
    wait_for,
)
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.hubproc import HubProcess
from tests.servers import RedisServer

KEY = "caliper-api-key-7f3a"
URN_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_caliper_endpoint_gets_sensor_envelopes_with_the_key_and_every_event(
    redis_server: RedisServer, prefix: str
) -> None:
    hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    hub.start()
    try:
        with Receiver() as receiver:
            token = admin_token(hub)
            created = api(hub, token, "POST", "/clients", json={
                "name": "Caliper analytics", "type": "university", "translator": "caliper",
                "delivery": "caliper-endpoint", "endpoint_url": receiver.url, "endpoint_token": KEY,
                "grant": [{}], "webhook_batch_max": 10, "webhook_batch_wait": 0.2,
            })
            assert created.status_code == 201, created.text
            assert KEY not in created.text and created.json()["endpoint_auth"] == "bearer"
            entries = publish_twice(hub, 25, seed=41)
            events = rendered(hub, entries, "caliper", "university")
            wait_for(lambda: sum(len(r.json["data"]) for r in receiver.requests) >= 2 * len(events), 30,
                     "every event at the Caliper endpoint")
            time.sleep(1.0)  # a window: anything delivered twice would arrive by now
            requests = list(receiver.requests)
    finally:
        hub.stop()
    assert len(requests) > 1
    received = []
    for request in requests:
        assert request.path == "/hook"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-type"] == "application/json"
        envelope = request.json
        assert set(envelope) == {"sensor", "sendTime", "dataVersion", "data"}
        assert envelope["sensor"] == f"{hub.http}/caliper/sensor"
        assert envelope["dataVersion"] == "http://purl.imsglobal.org/ctx/caliper/v1p2"
        assert datetime.fromisoformat(envelope["sendTime"].replace("Z", "+00:00")).tzinfo is not None
        assert 1 <= len(envelope["data"]) <= 10
        received += envelope["data"]
    ids = [event["id"] for event in received]
    assert all(URN_UUID.match(event_id) for event_id in ids)
    assert len(ids) == 2 * len(events) and set(ids) == {event["id"] for event in events}
    # in publishing order, each event twice (the LMS sent it twice), both copies under the same id:
    # Caliper ids are derived from the event's content, so a receiver can drop the redelivery
    assert ids[0::2] == ids[1::2] == [event["id"] for event in events]
    shape = [(e["type"], e["action"], e["eventTime"], e["object"]["id"]) for e in received]
    expected = [(e["type"], e["action"], e["eventTime"], e["object"]["id"]) for e in events]
    assert shape[0::2] == expected and shape[1::2] == expected


def test_refused_key_pauses_until_rotated_from_the_api_or_the_page(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    hub.start()
    try:
        receiver = Receiver()
        receiver.respond = lambda n: Reply(200 if receiver.requests[n].headers["authorization"] == f"Bearer {KEY}"
                                           else 401)
        with receiver:
            token = admin_token(hub)
            created = api(hub, token, "POST", "/clients", json={
                "name": "Caliper", "type": "university", "translator": "caliper", "delivery": "caliper-endpoint",
                "endpoint_url": receiver.url, "endpoint_token": "old-key", "grant": [{}], "webhook_batch_max": 50,
            }).json()
            client_id = created["client_id"]

            def status() -> str:
                return api(hub, token, "GET", f"/clients/{client_id}").json()["delivery_status"]

            entries = publish_twice(hub, 10, seed=42)
            wait_for(lambda: status() == "paused", 20, "a pause on 401")
            refused = len(receiver.requests)
            rotated = api(hub, token, "POST", f"/clients/{client_id}/endpoint-credential",
                          json={"endpoint_token": "still-wrong"})
            assert rotated.status_code == 200 and "still-wrong" not in rotated.text
            wait_for(lambda: len(receiver.requests) > refused and status() == "paused", 20, "a second pause")
            page = admin_page(hub, f"/clients/{client_id}/endpoint-credential", {"endpoint_token": KEY})
            assert "Endpoint credential rotated" in page and KEY not in page
            expected = 2 * len(rendered(hub, entries, "caliper", "university"))
            wait_for(lambda: sum(len(r.json["data"]) for r in receiver.requests if r.status == 200) >= expected,
                     20, "the held events after the fix")
            time.sleep(1.0)  # a window: anything delivered twice would arrive by now
            accepted = [r for r in receiver.requests if r.status == 200]
    finally:
        hub.stop()
    ids = [event["id"] for r in accepted for event in r.json["data"]]
    assert len(ids) == expected and len(set(ids)) == expected // 2, "each held event once per publication"
    assert all(r.status == 401 for r in receiver.requests if r.headers["authorization"] != f"Bearer {KEY}")
