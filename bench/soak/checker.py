"""The soak's checker: what every consumer received against what it was entitled to, from the stream.

The stream (read whole after the run) is the ground truth of what was published; the publishers' logs
say what the LMS sent. For each consumer (each SDK stream of a WebSocket client counts as one) every
event is judged by the client's entitlement when it was published, as the harness recorded it
around each change (`Change`: the stream's newest cursor before the admin call and a second after
it; an event inside that window may follow either side):
- **required**: allowed by every grant it could have been published under, translated by the client's
  translator, and not taken away by the next change within 30 s of its publication (a narrowing or a
  revocation may legitimately stop an event not yet delivered); it must be received, dead-lettered
  with a reason, or inside a reported gap, else it is **lost**;
- **unauthorized**: received although no grant the client ever had from its publication on allows it;
  **early**: allowed only by a grant given later (a socket resuming after a widening replays with the
  grant it has then);
- **duplicates**: the same cursor received twice by one consumer (at-least-once paths: webhooks and
  endpoints after a crash between a 2xx and its acknowledgement); **stream duplicates**: one LMS event
  under two cursors (the plug-in's documented at-least-once corner);
- per socket connection, cursors must strictly increase.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.soak.grants import Grant, allows, narrowed
from bench.soak.run import Change, Collected
from hub.translate import supports

SETTLED_MS = 30_000  # an event this much older than a change that takes it away must have been delivered


def key(cursor: str) -> tuple[int, int]:
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq or 0)


def stamp_ms(value: str) -> int:
    return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Facts:
    cursor: str
    ms: int
    course: str
    org: str
    name: str


@dataclass
class Row:
    consumer: str
    kind: str
    required: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    gap: int = 0
    lost: int = 0
    duplicates: int = 0
    unauthorized: int = 0
    early: int = 0
    unfiltered: int = 0  # inside the grant, outside the socket's own filter
    order_violations: int = 0
    mismatched: int = 0
    bad_signatures: int = 0
    torn: int = 0  # request bodies a reset cut short (answered, but the hub never saw the answer)
    lost_examples: list[str] = field(default_factory=list)
    unauthorized_examples: list[str] = field(default_factory=list)
    early_examples: list[str] = field(default_factory=list)


class Timeline:
    """A client's entitlement along the stream."""

    def __init__(self, changes: list[Change], sdk_filter: Any = None) -> None:
        self.changes = changes
        self.grants: list[Grant] = [None] + [narrowed(c.grant, sdk_filter) for c in changes]
        self.unfiltered = Timeline(changes) if sdk_filter is not None else None

    def judge(self, cursor: str) -> tuple[list[Grant], list[Grant], Grant, int]:
        """The grants the event may have been published under; those given after them; the next one and
        where (ms) its change began (-1: none)."""
        position = key(cursor)
        grants = self.grants
        for index, change in enumerate(self.changes):
            if position < key(change.before):
                return [grants[index]], grants[index + 1:], grants[index + 1], key(change.before)[0]
            if position <= key(change.after):
                following = self.changes[index + 1] if index + 1 < len(self.changes) else None
                return ([grants[index], grants[index + 1]], grants[index + 2:],
                        grants[index + 2] if following else None, key(following.before)[0] if following else -1)
        return [grants[-1]], [], None, -1


def check(run: Collected) -> dict[str, Any]:
    facts: dict[str, Facts] = {}
    by_ms: dict[int, list[str]] = defaultdict(list)
    for cursor, event in run.stream:
        context = event.get("context") or {}
        ms = stamp_ms(event["timestamp"])
        facts[cursor] = Facts(cursor, ms, str(context.get("course_id", "")), str(context.get("org_id", "")),
                              str(event.get("name", "")))
        by_ms[ms].append(cursor)
    ordered = sorted(facts, key=key)
    ordered_keys = [key(c) for c in ordered]
    stream_duplicates = sum(len(cursors) - 1 for cursors in by_ms.values())
    lms_lost = sorted(ms for ms, course in run.sent.items() if ms not in by_ms and "HiddenX" not in course)
    rows: list[Row] = []
    for name, state in run.clients.items():
        consumer = state.consumer
        if not state.client_id:
            continue
        timeline = Timeline(state.changes, consumer.sdk_filter)
        letters, gaps = _deadletters(run.deadletters.get(name, []))
        if consumer.delivery == "websocket":
            for index, stream in enumerate(state.streams):
                row = Row(f"{name}#{index + 1}" if len(state.streams) > 1 else name, "websocket")
                received: Counter[str] = Counter()
                times: dict[str, float] = {}
                for delivery in stream.record.deliveries:
                    received[delivery.cursor] += 1
                    times.setdefault(delivery.cursor, delivery.t)
                    fact = facts.get(delivery.cursor)
                    if fact is not None and any(stamp_ms(s) != fact.ms for s in delivery.stamps):
                        row.mismatched += 1
                last: dict[int, tuple[int, int]] = {}
                for frame in stream.record.frames:
                    position = key(frame.cursor)
                    if frame.connection in last and position <= last[frame.connection]:
                        row.order_violations += 1
                    last[frame.connection] = position
                ws_gaps = [(key(since), key(oldest)) for since, oldest in stream.record.gaps]
                _judge(row, consumer.translator, timeline, facts, ordered, received, set(), ws_gaps)
                rows.append(row)
            continue
        row = Row(name, consumer.delivery)
        received = Counter()
        if consumer.delivery == "webhook":
            for line in run.receiver_logs.get(name, []):
                if not 200 <= line["status"] < 300:
                    continue
                try:
                    body = json.loads(line["body"])
                except ValueError:  # a body cut short by a reset: its 2xx never reached the hub, which sent it again
                    row.torn += 1
                    continue
                if not signed(line["body"], line["headers"], state.webhook_secret):
                    row.bad_signatures += 1
                for item in body["events"] if body.get("type") == "batch" else [body]:
                    received[str(item["cursor"])] += 1
                    fact = facts.get(str(item["cursor"]))
                    if fact is not None and any(stamp_ms(s) != fact.ms for s in _stamps(item.get("data"))):
                        row.mismatched += 1
        else:
            outputs: list[tuple[str, str]] = []  # (output id, its time stamp)
            if consumer.delivery == "lrs":
                outputs = [(s["id"], s["timestamp"]) for s in run.lrs_statements]
            else:
                for line in run.receiver_logs.get(name, []):
                    if 200 <= line["status"] < 300:
                        try:
                            envelope = json.loads(line["body"])
                        except ValueError:
                            row.torn += 1
                            continue
                        outputs += [(e["id"], e["eventTime"]) for e in envelope["data"]]
            ids: Counter[str] = Counter(output_id for output_id, _ in outputs)
            row.duplicates += sum(count - 1 for count in ids.values())
            seen_ids: set[str] = set()
            for output_id, stamp in outputs:
                if output_id in seen_ids:
                    continue
                seen_ids.add(output_id)
                cursors = by_ms.get(stamp_ms(stamp), [])
                if not cursors:
                    row.mismatched += 1
                for cursor in cursors:  # an LMS event twice in the stream: one output id for both
                    received[cursor] = max(received[cursor], 1)
        _judge(row, consumer.translator, timeline, facts, ordered, received, letters, gaps)
        rows.append(row)
    leaks = [line for state in run.clients.values() for line in state.token_leaks]
    checks = [line for state in run.clients.values() for line in state.token_checks]
    return {
        "published": len(facts),
        "sent": len(run.sent),
        "sent_hidden": sum(1 for course in run.sent.values() if "HiddenX" in course),
        "hidden_in_stream": sum(1 for f in facts.values() if "HiddenX" in f.course),
        "stream_duplicates": stream_duplicates,
        "lms_lost": len(lms_lost),
        "lms_lost_examples": lms_lost[:5],
        "rows": rows,
        "token_checks": checks,
        "token_leaks": leaks,
        "delays": _delays(run, facts, by_ms),
        "_ordered": len(ordered_keys),
    }


def signed(body: str, headers: dict[str, str], secret: str) -> bool:
    """The Standard Webhooks signature, checked as a receiver does but without its 5-minute tolerance
    for the timestamp (the checker runs after the soak)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.{body}".encode()
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in headers.get("webhook-signature", "").split() if "," in part]
    return any(hmac.compare_digest(expected, value) for value in offered)


def _stamps(data: Any) -> list[str]:
    items = data if isinstance(data, list) else [data]
    return [str(i.get("timestamp") or i.get("eventTime")) for i in items if isinstance(i, dict)]


def _deadletters(rows: list[dict[str, Any]]) -> tuple[set[str], list[tuple[tuple[int, int], tuple[int, int]]]]:
    letters: set[str] = set()
    gaps = []
    for row in rows:
        if row.get("reason") == "gap":
            body = json.loads(row["body"])
            gaps.append((key(body["from"]), key(body["to"])))
        elif row.get("reason") and row.get("cursor"):
            letters.add(row["cursor"])
    return letters, gaps


def _judge(row: Row, translator: str, timeline: Timeline, facts: dict[str, Facts], ordered: list[str],
           received: Counter[str], letters: set[str], gaps: list[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    for cursor, count in received.items():
        row.delivered += 1
        row.duplicates += count - 1
        fact = facts.get(cursor)
        if fact is None:
            row.mismatched += 1
            continue
        possible, later, _, _ = timeline.judge(cursor)
        if any(allows(g, fact.course, fact.org, fact.name) for g in possible):
            continue
        if timeline.unfiltered is not None and any(
                allows(g, fact.course, fact.org, fact.name) for g in timeline.unfiltered.judge(cursor)[0]):
            row.unfiltered += 1
            continue
        if any(allows(g, fact.course, fact.org, fact.name) for g in later):
            row.early += 1
            if len(row.early_examples) < 5:
                row.early_examples.append(f"{cursor} {fact.course} {fact.name}")
        else:
            row.unauthorized += 1
            if len(row.unauthorized_examples) < 5:
                row.unauthorized_examples.append(f"{cursor} {fact.course} {fact.name}")
    for cursor in ordered:
        fact = facts[cursor]
        if not supports(translator, fact.name):
            continue
        possible, _, following, changed_at = timeline.judge(cursor)
        if not all(allows(g, fact.course, fact.org, fact.name) for g in possible):
            continue
        if changed_at >= 0 and changed_at - fact.ms < SETTLED_MS and not allows(following, fact.course, fact.org,
                                                                               fact.name):
            continue  # taken away before it had to be delivered
        row.required += 1
        if cursor in received:
            continue
        if cursor in letters:
            row.dead_lettered += 1
            continue
        position = key(cursor)
        if any(low < position < high for low, high in gaps):
            row.gap += 1
            continue
        row.lost += 1
        if len(row.lost_examples) < 5:
            row.lost_examples.append(f"{cursor} {fact.course} {fact.name}")


def _delays(run: Collected, facts: dict[str, Facts], by_ms: dict[int, list[str]]) -> list[dict[str, Any]]:
    """For each fault: the longest time after it ended until an event published during it (or in the 5 s
    before) arrived at a consumer (None: every such event had arrived before it ended)."""
    arrivals: list[tuple[float, float]] = []  # (published at, received at), seconds
    for state in run.clients.values():
        for stream in state.streams:
            arrivals += [(key(d.cursor)[0] / 1000, d.t) for d in stream.record.deliveries]
    for lines in run.receiver_logs.values():
        for line in lines:
            if 200 <= line["status"] < 300:
                try:
                    body = json.loads(line["body"])
                except ValueError:
                    continue
                items = body.get("events") or body.get("data") or [body]
                for item in items if isinstance(items, list) else [items]:
                    if "cursor" in item:
                        arrivals.append((key(str(item["cursor"]))[0] / 1000, line["t"]))
                    elif "eventTime" in item:
                        arrivals.append((stamp_ms(item["eventTime"]) / 1000, line["t"]))
    for statement in run.lrs_statements:
        if statement.get("stored"):
            arrivals.append((stamp_ms(statement["timestamp"]) / 1000, stamp_ms(statement["stored"]) / 1000))
    arrivals.sort()
    published = [a for a, _ in arrivals]
    result = []
    for fault in run.faults:
        if not fault.ended:
            continue
        low, high = bisect_left(published, fault.started - 5), bisect_left(published, fault.ended)
        late = [received - fault.ended for _, received in arrivals[low:high] if received > fault.ended]
        result.append({"kind": fault.kind, "target": fault.target, "duration": fault.duration,
                       "delay": max(late) if late else None})
    return result
