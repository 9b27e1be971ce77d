"""Hypothesis strategies for LMS events of one name: real shapes, one optional field dropped, values varied.

Seeds are rthub's own fixtures (one real shape per name, one per form where a name has several:
`fixtures.FORMS`) and nothing else, so the source tree alone decides which events are generated: the
same with or without the shared corpus beside it (whose events `test_conformance.py` checks one by
one). Each seed grows its own events, so every form gets as many as a name. From a seed, an example may
switch to the other LMS shape (event-tracking's for a tracking-log seed, the tracking log's for an
event-tracking one), drop one field (any leaf of `data`, one answer of a browser's url-encoded
answers, or a context field), and redraw values: numbers and booleans of the same type, strings from
the values the same key takes across all seeds, fresh ids for id-like keys and answered blocks, other
(past) timestamps and users.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import pathlib
import re
import string
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests import seeded
from tests.hub.translate import fixtures

Path = tuple[str | int, ...]
Spot = tuple[str, Path]  # ("data" or "context", the path of a field in it)

# Request fields the tracking log keeps at the top level (event-tracking keeps them in context).
REQUEST_FIELDS = ("username", "ip", "agent", "host", "referer", "session", "page", "event_source", "accept_language")
CONTEXT_DROPPABLE = ("course_id", "session", "referer", "page", "username", "user_id", "org_id", "module", "path")
_HEX = re.compile(r"[0-9a-f]{24,32}\Z")
_BLOCK = re.compile(r"(block-v1:[^+]+\+[^+]+\+[^+]+\+type@[^+]+\+block@)([0-9a-zA-Z_]+)\Z")
# A browser's answer to one input of a problem, url-encoded: `input_<block>_2_1=choice_1` (`%5B%5D` for a list).
_ANSWER = re.compile(r"(input_)([0-9a-f]{32})(_\d+_\d+(?:%5B%5D)?=)(.*)\Z")
_COURSES = (
    "course-v1:edX+DemoX+Demo_Course",
    "course-v1:RthubX+T101+2024",
    "course-v1:MITx+6.002x+2025_T1",
    "ccx-v1:edX+DemoX+Demo_Course+ccx@7",
)


def event_name(raw: dict[str, Any]) -> str:
    return raw.get("name") or raw.get("event_type") or ""


def seeds() -> dict[str, list[dict[str, Any]]]:
    """Real events per name: rthub's fixture for it, or one per form (the first is the fixture)."""
    return {name: list(fixtures.FORMS[name].values()) if name in fixtures.FORMS else [raw]
            for name, raw in fixtures.RAW_EVENTS.items()}


def form(raw: dict[str, Any]) -> str:
    """Which of `fixtures.FORMS`' forms an event has: `browser` (the browser sent it), `server, multiple
    questions` (its payload submits answers to more than one question) or `server`."""
    context = raw.get("context") or {}
    if (context.get("event_source") or raw.get("event_source")) == "browser":
        return "browser"
    body = _parse(raw["data"] if "data" in raw else raw.get("event"))
    submission = body.get("submission") if isinstance(body, dict) else None
    return "server, multiple questions" if isinstance(submission, dict) and len(submission) > 1 else "server"


def as_event_tracking(raw: dict[str, Any]) -> dict[str, Any]:
    """The event-tracking shape of a tracking-log event (`name`, `timestamp`, `data`, `context`)."""
    context = dict(raw.get("context") or {})
    for key in REQUEST_FIELDS:
        if raw.get(key) is not None and key not in context:
            context[key] = raw[key]
    return {
        "name": event_name(raw),
        "timestamp": raw.get("timestamp") or raw.get("time"),
        "data": raw["data"] if "data" in raw else raw.get("event", {}),
        "context": context,
    }


def as_tracking_log(raw: dict[str, Any]) -> dict[str, Any]:
    """The tracking-log shape of an event-tracking event: `event_type`, `time`, the payload under `event`,
    the request fields at the top level (the rest of `context` stays there)."""
    context = dict(raw.get("context") or {})
    log = {"event_type": event_name(raw), "time": raw.get("timestamp") or raw.get("time")}
    for key in REQUEST_FIELDS:
        if key in context:
            log[key] = context.pop(key)
    return {**log, "context": context, "event": raw["data"] if "data" in raw else raw.get("event", {})}


def other_shape(raw: dict[str, Any]) -> dict[str, Any]:
    """The same event in the other LMS shape."""
    return as_tracking_log(raw) if "name" in raw and "event_type" not in raw else as_event_tracking(raw)


def leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every scalar (and empty container) inside `value` with its path."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def _value_pool(all_seeds: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Strings each key takes anywhere in the seeds, so redrawn values stay realistic."""
    pool: dict[str, set[str]] = defaultdict(set)
    for events in all_seeds.values():
        for raw in events:
            body = raw.get("data", raw.get("event"))
            body = _parse(body)
            for path, value in leaves(body):
                if isinstance(value, str) and path and isinstance(path[-1], str):
                    pool[path[-1]].add(value)
    return {key: sorted(values) for key, values in pool.items()}


def _encoded(body: Any, like: Any) -> Any:
    """`body` as the seed's payload `like` was written: a JSON string, url-encoded answers, or as is."""
    if isinstance(like, str):
        return json.dumps(body) if like[:1] == "{" else "&".join(body)
    return body


def _parse(body: Any) -> Any:
    if isinstance(body, str) and body[:1] == "{":
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def _set(target: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _drop(target: Any, path: Path) -> None:
    for key in path[:-1]:
        target = target[key]
    if isinstance(target, list):
        target.pop(path[-1])
    else:
        target.pop(path[-1], None)


def _string(key: str, current: str, pool: dict[str, list[Any]]) -> st.SearchStrategy[str]:
    choices: list[st.SearchStrategy[str]] = [st.just(current)]
    if key in pool:
        choices.append(st.sampled_from(pool[key]))
    if _HEX.match(current):
        choices.append(st.text(alphabet="0123456789abcdef", min_size=len(current), max_size=len(current)))
    block = _BLOCK.match(current)
    if block:
        head = block.group(1)
        ids = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=6, max_size=32)
        choices.append(ids.map(lambda new: head + new))
    if current in _COURSES or current.startswith("course-v1:"):
        choices.append(st.sampled_from(_COURSES))
    answer = _ANSWER.match(current)
    if answer:
        head, block, tail, value = answer.groups()
        blocks = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
        choices.append(blocks.map(lambda new: f"{head}{new}{tail}{value}"))
        choices.append(st.integers(0, 9).map(lambda n: f"{head}{block}{tail}choice_{n}"))
    return st.one_of(choices)


def _redraw(key: Any, current: Any, pool: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    """A value of the same kind as `current` (and sometimes `current` itself)."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        lowest = 1 if isinstance(key, str) and key.endswith("user_id") else 0  # LMS user ids start at 1
        return st.one_of(st.just(current), st.integers(min_value=lowest, max_value=10_000))
    if isinstance(current, float):
        return st.one_of(
            st.just(current),
            st.floats(min_value=0, max_value=100_000, allow_nan=False, allow_infinity=False),
            st.integers(min_value=0, max_value=1000).map(float),
        )
    if isinstance(current, str):
        return _string(key if isinstance(key, str) else "", current, pool)
    return st.just(current)


# An LMS event is stamped when it happens, before anything translates it: past times only (a fixed
# bound, so the same events are drawn on any day; xAPI 1.0.3 Data 2.4.7: no statement in the future).
_TIMESTAMPS = st.datetimes(
    min_value=datetime(2019, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-4))]
    )
)


def _prepared(seed: dict[str, Any], switch: bool) -> tuple[dict[str, Any], Any, dict[str, Any], list[Spot]]:
    """A copy of `seed` (in the other LMS shape when `switch`) with its payload under `data`, the payload
    parsed (url-encoded answers as a list of `key=value`), its context, and the fields that may be dropped."""
    raw = other_shape(copy.deepcopy(seed)) if switch else copy.deepcopy(seed)
    if "data" not in raw:  # event-tracking hands its backends the payload as `data`
        raw["data"] = raw.pop("event", {})
    body = _parse(raw.get("data"))
    if isinstance(body, str) and "=" in body:
        body = body.split("&")
    context = raw.setdefault("context", {})
    spots: list[Spot] = [("data", path) for path, _ in leaves(body) if path]
    spots += [("context", (key,)) for key in CONTEXT_DROPPABLE if key in context]
    return raw, body, context, spots


def each_field_dropped(name: str, all_seeds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every seed of `name` in both shapes with each droppable field dropped in turn, values unchanged:
    the single-drop cases are all compared, whatever the random examples happen to drop."""
    found = []
    for seed in all_seeds[name]:
        for switch in (False, True):
            for spot in _prepared(seed, switch)[3]:
                raw, body, context, _ = _prepared(seed, switch)
                _drop(body if spot[0] == "data" else context, spot[1])
                raw["data"] = _encoded(body, raw["data"])
                raw["timestamp"] = raw.get("timestamp") or raw.get("time")
                raw["name"] = event_name(raw)
                found.append(raw)
    return found


@st.composite
def _mutated(draw: st.DrawFn, choices: list[dict[str, Any]], pool: dict[str, list[Any]]) -> dict[str, Any]:
    raw, body, context, spots = _prepared(draw(st.sampled_from(choices)), draw(st.booleans()))
    body_key = "data"
    drop = draw(st.none() | st.sampled_from(spots)) if spots else None
    for path, current in list(leaves(body)):
        if path and draw(st.integers(0, 3)) == 0:
            _set(body, path, draw(_redraw(path[-1], current, pool)))
    if drop is not None:
        _drop(body if drop[0] == body_key else context, drop[1])
    moment = draw(_TIMESTAMPS)
    stamp = moment.isoformat() if draw(st.booleans()) else moment.astimezone(UTC).isoformat()
    raw["timestamp"] = stamp  # event-tracking, which hands events to the reference, always sets both
    raw["name"] = event_name(raw)
    if "time" in raw:
        raw["time"] = stamp
    if "user_id" in context and draw(st.booleans()):
        context["user_id"] = draw(st.integers(min_value=1, max_value=10**7))
    raw[body_key] = _encoded(body, raw[body_key])
    return raw


def generated(name: str, all_seeds: dict[str, list[dict[str, Any]]], minimum: int) -> list[dict[str, Any]]:
    """At least `minimum` distinct events from each seed of `name`, and every single-field drop of its seeds;
    reproducible (fixed hypothesis seeds, no database, no constants from loaded code: `tests/seeded.py`).

    Drawing them costs about 90 s of CPU for every name, and two modules (the clause checks and the
    differential test) ask for the same events, often at once from two workers: the first draws them
    and files them under a digest of everything that decides them (this module, the fixtures, the
    Hypothesis profile and version, the seeds, the name, `minimum`); the others wait for it and read them.
    """
    sources = [pathlib.Path(module.__file__ or "").read_text() for module in (sys.modules[__name__], fixtures, seeded)]
    decided_by = [*sources, hypothesis.__version__, json.dumps(all_seeds, sort_keys=True), name, str(minimum)]
    digest = hashlib.sha256("\n".join(decided_by).encode()).hexdigest()[:32]
    folder = pathlib.Path(tempfile.gettempdir()) / "rthub-generated-events"
    folder.mkdir(exist_ok=True)
    stored = folder / f"{digest}.json"
    with open(folder / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored.exists():
            return json.loads(stored.read_text())
        text = json.dumps(_draw(name, all_seeds, minimum))
        partial = stored.with_suffix(".part")
        partial.write_text(text)
        partial.replace(stored)
        return json.loads(text)  # the same objects whoever drew them


def _draw(name: str, all_seeds: dict[str, list[dict[str, Any]]], minimum: int) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    pool = _value_pool(all_seeds)
    for seed in all_seeds[name]:
        for key, raw in _grown(seed, pool, minimum).items():
            found.setdefault(key, raw)
    for raw in each_field_dropped(name, all_seeds):
        found.setdefault(json.dumps(raw, sort_keys=True), raw)
    return list(found.values())


def _grown(seed: dict[str, Any], pool: dict[str, list[Any]], minimum: int) -> dict[str, dict[str, Any]]:
    """At least `minimum` distinct events from one seed (up to 20 rounds of fixed hypothesis seeds)."""
    grown: dict[str, dict[str, Any]] = {}
    for round_seed in range(20):
        if len(grown) >= minimum:
            break

        @hypothesis_seed(round_seed)
        @settings(
            max_examples=minimum,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(_mutated([seed], pool))
        def collect(raw: dict[str, Any]) -> None:
            grown.setdefault(json.dumps(raw, sort_keys=True), raw)

        collect()
    return grown
