"""IMS Caliper 1.2 into a Caliper endpoint: Sensor API envelopes with a bearer key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

import orjson

from hub.delivery.webhook.formats.batch import BatchSender, records
from hub.delivery.webhook.outbox import Item

DATA_VERSION = "http://purl.imsglobal.org/ctx/caliper/v1p2"


class CaliperEnvelope(TypedDict):
    """A Caliper Sensor API envelope: the batch's events, in stream order."""

    sensor: Annotated[str, {"description": "this hub's sensor IRI, <issuer>/caliper/sensor"}]
    sendTime: Annotated[str, {"format": "date-time", "description": "when this attempt was sent (UTC, ms)"}]
    dataVersion: Annotated[str, {"const": DATA_VERSION}]
    data: Annotated[list[dict[str, Any]], {"description": "Caliper 1.2 events"}]


class CaliperSender(BatchSender):
    def __init__(self, authorization: str, sensor: str) -> None:
        self.sensor = sensor
        self.headers = {"authorization": authorization, "content-type": "application/json"}

    def body(self, items: list[Item]) -> bytes:
        """One envelope: `sensor`, `sendTime` (now, ms, UTC), `dataVersion`, `data` (the events, in order)."""
        send_time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        envelope: CaliperEnvelope = {
            "sensor": self.sensor, "sendTime": send_time, "dataVersion": DATA_VERSION, "data": list(records(items))
        }
        return orjson.dumps(envelope)
