"""Bus message -> normalised rthub event, with openedx-events' own Avro schema and deserializer.

The producer (`edx-event-bus-redis`) writes each signal as a stream entry whose field `event_data` is
the schemaless Avro encoding of the signal's data, and whose other fields are CloudEvent headers (`id`,
`type`, `source`, `time`, `minorversion`, `sourcehost`, `sourcelib`). For the tracking signal the data
is one `TrackingLogData` (`name`, `timestamp`, and `data` and `context` as JSON text), which becomes
the event-tracking shape the plug-in's `normalise` reads. Anything that cannot become an event raises
`UnusableMessage` with a short reason code and a human detail, for the dead letter: `bad-json` for a
`data` or `context` that is not JSON or nests deeper than rthub reads or writes.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
from openedx_events.analytics.signals import TRACKING_EVENT_EMITTED
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer

from rthub_lms.events import Event, MalformedEvent, TooDeep, loads, normalise

TRACKING_EVENT_TYPE = TRACKING_EVENT_EMITTED.event_type
DATA_FIELD = b"event_data"
TYPE_HEADER = b"type"


class UnusableMessage(ValueError):
    """A bus message that cannot become an rthub event; `reason` is a stable code, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TrackingDecoder:
    """Decodes tracking-signal messages; the schema is built and parsed once, not per message."""

    def __init__(self) -> None:
        self._deserializer = AvroSignalDeserializer(TRACKING_EVENT_EMITTED)
        self._schema = fastavro.parse_schema(self._deserializer.schema)

    def decode(self, fields: dict[bytes, bytes]) -> Event:
        """The normalised event a message carries, or `UnusableMessage`."""
        event_type = fields.get(TYPE_HEADER)
        if event_type is None:
            raise UnusableMessage("missing-type", "no `type` header")
        if event_type.decode("utf-8", "replace") != TRACKING_EVENT_TYPE:
            raise UnusableMessage("unknown-type", f"type {event_type[:200]!r} is not {TRACKING_EVENT_TYPE}")
        raw = fields.get(DATA_FIELD)
        if raw is None:
            raise UnusableMessage("missing-data", "no `event_data` field")
        log = self._tracking_log(raw)
        return self._normalised(log)

    def _tracking_log(self, raw: bytes) -> Any:
        buffer = io.BytesIO(raw)
        try:
            record = fastavro.schemaless_reader(buffer, self._schema, None)
        except Exception as exc:  # fastavro raises whatever its reader met: EOFError, UnicodeDecodeError...
            raise UnusableMessage("bad-avro", f"not a {TRACKING_EVENT_TYPE} record: {exc!r}") from exc
        if buffer.tell() != len(raw):
            raise UnusableMessage("bad-avro", f"{len(raw) - buffer.tell()} bytes after the record")
        try:
            return self._deserializer.from_dict(record)["tracking_log"]
        except (ValueError, TypeError) as exc:
            raise UnusableMessage("malformed", f"tracking log fields: {exc}") from exc

    @staticmethod
    def _normalised(log: Any) -> Event:
        try:
            data = loads(log.data)
            context = loads(log.context)
        except ValueError as exc:  # TooDeep included
            raise UnusableMessage("bad-json", f"`data` or `context` is not JSON rthub can read: {exc}") from exc
        try:
            return normalise({"name": log.name, "timestamp": log.timestamp, "data": data, "context": context})
        except TooDeep as exc:
            raise UnusableMessage("bad-json", f"`data`: {exc}") from exc
        except MalformedEvent as exc:
            raise UnusableMessage("malformed", str(exc)) from exc
