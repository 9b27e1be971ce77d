"""One event as the render stage sends it to workers: cursor, grant facts, raw event, rendered frames.

Wire form: `u32 size` then `u32 header size`, the header (JSON: cursor, facts, one
`[translator, consumer type, length]` per rendered group, raw event length), the raw event JSON,
then each frame's text. A length of -1 means the event has no frame for that group (no learner,
no translation). Frames and the raw event stay bytes until a worker needs them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import orjson

from hub.ingest import Entry
from rthub_lms.grants import EventFacts

SIZE = struct.Struct("!I")  # each of the two sizes in front
MAX_BUNDLE = 16 * 2**20

Group = tuple[str, str]


class BadBundle(ValueError):
    """Bytes on the stage socket that are not a bundle: the worker drops the connection."""


@dataclass(frozen=True, slots=True)
class Bundle:
    cursor: str
    facts: EventFacts
    frames: dict[Group, str | None]
    raw_event: bytes

    def entry(self) -> Entry:
        """The event itself, for a group the stage did not render."""
        return Entry(self.cursor, orjson.loads(self.raw_event))


def encode(entry: Entry, facts: EventFacts, frames: dict[Group, str | None]) -> bytes:
    raw_event = orjson.dumps(entry.event)
    texts = [text.encode() if text is not None else b"" for text in frames.values()]
    groups = [[translator, consumer_type, len(data) if text is not None else -1]
              for (translator, consumer_type), text, data in zip(frames, frames.values(), texts, strict=True)]
    header = orjson.dumps([entry.cursor, [facts.course, facts.org, facts.site, facts.user, facts.event_type],
                           groups, len(raw_event)])
    body = b"".join((header, raw_event, *texts))
    return SIZE.pack(SIZE.size + len(body)) + SIZE.pack(len(header)) + body


def decode(body: bytes) -> Bundle:
    """A bundle from what follows its `u32 size` (the header size, header, raw event, frames)."""
    try:
        (header_size,) = SIZE.unpack_from(body)
        offset = SIZE.size + header_size
        cursor, facts, groups, raw_size = orjson.loads(body[SIZE.size:offset])
        raw_event = body[offset:offset + raw_size]
        offset += raw_size
        frames: dict[Group, str | None] = {}
        for translator, consumer_type, size in groups:
            if size < 0:
                frames[(translator, consumer_type)] = None
                continue
            frames[(translator, consumer_type)] = body[offset:offset + size].decode()
            offset += size
        course, org, site, user, event_type = facts
        return Bundle(cursor, EventFacts(course, org, site, user, event_type), frames, raw_event)
    except (struct.error, orjson.JSONDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadBundle(str(exc)[:200]) from exc
