"""`rthub publish`: replay a tracking log (JSON lines, optionally gzip) into Redis; and how a log is read.

Bad lines are reported with their line number and skipped; Redis failures stop the replay with
the number of the last line that was published, so a rerun can pick up from there. `decompressed` and
`parse_line` are also how `rthub backfill` reads its sources (one reading of a tracking log).
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from tqdm import tqdm

from rthub_lms.backend import StreamWriter
from rthub_lms.events import Event, MalformedEvent, encode, loads, normalise

BATCH = 500


@dataclass
class ReplayReport:
    published: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def open_log(path: str) -> tuple[IO[bytes], int | None]:
    """The log as a byte stream, plus its size on disk for the progress bar (None for stdin)."""
    if path == "-":
        return sys.stdin.buffer, None
    file = Path(path)
    raw: IO[bytes] = file.open("rb")
    stream = decompressed(raw)
    return stream, None if stream is not raw else file.stat().st_size


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """A seekable byte stream as lines can be read from it: gunzipped when it starts with gzip's magic."""
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw) if gzipped else raw


def read_events(stream: IO[bytes]) -> Iterator[tuple[int, int, bytes | str]]:
    """(line number, bytes read, the encoded event or the reason the line is bad) for each non-blank line."""
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield number, len(line), _parse(line)


def _parse(line: bytes) -> bytes | str:
    event = parse_line(line)
    if isinstance(event, str):
        return event
    try:
        return encode(event)
    except MalformedEvent as exc:  # nesting too deep included
        return str(exc)


def parse_line(line: bytes) -> Event | str:
    """One log line as a normalised event, or the reason it is not one. orjson reads the lines it can;
    anything it refuses is read again by `loads`, so the verdict and its reason are `loads`'s own."""
    try:
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            raw = loads(line)
        return normalise(raw)
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg}"
    except MalformedEvent as exc:  # nesting too deep included
        return str(exc)


def replay(path: str, writer: StreamWriter, progress: bool = True) -> ReplayReport:
    report = ReplayReport()
    stream, size = open_log(path)
    batch: list[bytes] = []
    with stream, tqdm(
        total=size, unit="B", unit_scale=True, desc="publishing", disable=not progress, file=sys.stderr
    ) as bar:
        for number, length, event in read_events(stream):
            bar.update(length)
            if isinstance(event, str):
                report.bad_lines.append((number, event))
                bar.write(f"line {number}: skipped, {event}", file=sys.stderr)
                continue
            batch.append(event)
            if len(batch) >= BATCH:
                report.published += len(writer.write_many_encoded(batch))
                batch.clear()
        if batch:
            report.published += len(writer.write_many_encoded(batch))
    return report
