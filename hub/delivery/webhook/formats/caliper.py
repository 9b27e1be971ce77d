"""IMS Caliper 1.2 into a Caliper endpoint: Sensor API envelopes with a bearer key."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from hub.delivery.webhook.formats.batch import BatchSender, records
from hub.delivery.webhook.outbox import Item

DATA_VERSION = "http://purl.imsglobal.org/ctx/caliper/v1p2"


class CaliperSender(BatchSender):
    def __init__(self, authorization: str, sensor: str) -> None:
        self.sensor = sensor
        self.headers = {"authorization": authorization, "content-type": "application/json"}

    def body(self, items: list[Item]) -> bytes:
        """One envelope: `sensor`, `sendTime` (now, ms, UTC), `dataVersion`, `data` (the events, in order)."""
        send_time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return orjson.dumps(
            {"sensor": self.sensor, "sendTime": send_time, "dataVersion": DATA_VERSION, "data": list(records(items))}
        )
