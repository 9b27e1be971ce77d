"""Tracking logs to backfill, the `rthub backfill` command, and what a backfill should deliver."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.ingest import Entry
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.formats.helpers import rendered_with
from tests.hubproc import ROOT

START = datetime(2025, 3, 1, tzinfo=UTC)


def history(count: int, seed: int, start: datetime = START) -> list[dict[str, Any]]:
    """`count` simulated LMS events one minute apart from `start`; every other one in the tracking log's
    own shape (`event_type`, `time`, `event`, top-level request fields), the rest in event-tracking's."""
    lms = SimulatedLMS(seed=seed)
    events = []
    for number in range(count):
        event = lms.next_event()
        event["timestamp"] = (start + timedelta(minutes=number)).isoformat()
        events.append(_as_tracking_log(event) if number % 2 else event)
    return events


def _as_tracking_log(event: dict[str, Any]) -> dict[str, Any]:
    context = dict(event["context"])
    return {
        "event_type": event["name"], "time": event["timestamp"], "event": event["data"],
        "username": context.pop("username", ""), "ip": context.pop("ip", ""), "host": context.pop("host", ""),
        "event_source": context.pop("event_source", "server"), "context": context,
    }


def write_log(path: Path, events: Iterable[dict[str, Any]], extra_lines: Iterable[bytes] = ()) -> Path:
    """The events as JSON lines (gzip when the name ends in .gz), then `extra_lines` as they are."""
    body = b"".join(orjson.dumps(event) + b"\n" for event in events) + b"".join(extra_lines)
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def backfill_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub.cli", "backfill", *args]


def backfill(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(backfill_command(*args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def expected_statements(settings: Settings, events: list[dict[str, Any]], translator: str,
                        consumer_type: str) -> list[dict[str, Any]]:
    """What the hub would render for these events for this consumer type (same Redis: same actors)."""
    entries = [Entry(f"0-{number}", normalise(event)) for number, event in enumerate(events, 1)]
    return rendered_with(settings, entries, translator, consumer_type)


def tracking_log(count: int, seed: int, lms_root_url: str = "http://localhost:18000") -> list[dict[str, Any]]:
    """`count` events as the LMS's tracking.log holds them: every line in the tracking log's shape, with
    the event's `name` and the request's `referer` (the reference translator requires one for problems)."""
    lines = []
    for event in history(count, seed):
        name = event.get("name") or event["event_type"]
        line = event if "event_type" in event else _as_tracking_log(event)
        referer = f"{lms_root_url}/courses/{line['context'].get('course_id', '')}/courseware/"
        lines.append({"name": name, **line, "referer": referer})
    return lines
