"""A buggy or hostile producer writes 10,000 malformed entries straight into Redis: the hub stays up,
keeps delivering the good events in order, and dead-letters every bad entry it meets with its reason."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import httpx
import orjson
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend, StreamWriter
from rthub_lms.events import MAX_EVENT_BYTES, normalise
from rthub_lms.keys import PUBLISH_SCRIPT
from tests import SEND_TIMEOUT
from tests.hubproc import HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until
from tests.wsclient import collect, connect, quiet

TOTAL_BAD = 10_000
CHUNK = 500
GOOD_EVERY = 50

_VALID = {"name": "problem_check", "timestamp": "2026-11-25T10:00:00+00:00", "data": {}, "context": {"user_id": 7}}


def _junk(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefghij:{[,\"") for _ in range(size))


def _bad_payload(rng: random.Random) -> tuple[bytes, str]:
    """One malformed event payload and the reason the hub must give for it."""
    kind = rng.randrange(10)
    if kind == 0:
        return b'{"name": "problem_check", "timestamp": ' + _junk(rng, rng.randrange(1, 40)).encode(), "invalid_json"
    if kind == 1:
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
        return b'{"name": "problem_' + bad + b'check", "timestamp": "x"}', "invalid_utf8"
    if kind == 2:
        return orjson.dumps(rng.choice([[], 1, "event", None, True, 2.5, [_VALID]])), "wrong_shape"
    if kind == 3:
        event = dict(_VALID)
        del event[rng.choice(list(event))]
        return orjson.dumps(event), "wrong_shape"
    if kind == 4:
        field, value = rng.choice(
            [("name", 42), ("name", ""), ("name", ["x"]), ("timestamp", 1700000000), ("timestamp", "yesterday"),
             ("timestamp", "2026-11-25T10:00:00"), ("context", []), ("context", "ctx"), ("timestamp", "9" * 60_000)]
        )
        return orjson.dumps({**_VALID, field: value}), "wrong_shape"
    if kind == 5:
        depth = rng.randrange(1100, 3000)
        return b'{"name": "problem_check", "data": ' + b"[" * depth + b"]" * depth + b"}", "too_deep"
    if kind == 6 and rng.random() < 0.2:  # few: each one crosses pub/sub at full size
        answer = "x" * (MAX_EVENT_BYTES + rng.randrange(1, 5000))
        return orjson.dumps({**_VALID, "data": {"answer": answer}}), "oversize"
    return orjson.dumps({**_VALID, "context": rng.choice([1, "c", None, [1]])}), "wrong_shape"


def _bad_live_message(rng: random.Random) -> bytes:
    """A message on the live channel that no XADD produced: its cursor cannot be used."""
    body = orjson.dumps(_VALID)
    return rng.choice([
        b"x" + rng.randbytes(rng.randrange(0, 64)),
        b"not-a-cursor\n" + body,
        b"\xff\xfe\n" + body,
        b"-1-1\n" + body,
        b"123456789012345678901234-0\n" + body,
        b"1-2-3\n" + body,
        f"{int(time.time() * 1000) + 3_600_000}-0\n".encode() + body,  # an hour ahead
        b"",
    ])


@pytest.mark.hub_process
def test_ten_thousand_malformed_entries_are_dead_lettered_and_good_events_still_flow(
    hub: HubProcess, token: str
) -> None:
    rng = random.Random(2026)
    server = redis.Redis.from_url(hub.redis_url)
    settings_ = Settings.from_env(redis_url=hub.redis_url, redis_prefix=hub.prefix)
    writer = StreamWriter(server, settings_)
    script = server.register_script(PUBLISH_SCRIPT)
    keys = [rkeys.stream_key(rkeys.Prefix(hub.prefix)), rkeys.live_channel(rkeys.Prefix(hub.prefix))]
    deadletters = rkeys.ingest_deadletters_key(rkeys.Prefix(hub.prefix))
    lms = SimulatedLMS(seed=60)
    good_cursors: list[str] = []
    expected: Counter[str] = Counter()
    stream_only = 0

    async def scenario() -> tuple[list[dict], list[dict]]:
        nonlocal stream_only
        ws = await connect(hub.ws, token)
        first_cursor = writer.write(normalise(lms.next_event()))
        good_cursors.append(first_cursor)
        frames = await collect(ws, 1)
        written = 0
        while written < TOTAL_BAD:
            pipe = server.pipeline(transaction=False)
            good_at = []
            for position in range(CHUNK):
                written += 1
                if written % GOOD_EVERY == 0:
                    script(keys=keys, args=[1_000_000, orjson.dumps(normalise(lms.next_event()))], client=pipe)
                    good_at.append(position)
                    continue
                route = rng.random()
                if route < 0.6:
                    payload, reason = _bad_payload(rng)
                    script(keys=keys, args=[1_000_000, payload], client=pipe)
                    expected[reason] += 1
                elif route < 0.9:
                    pipe.publish(keys[1], _bad_live_message(rng))
                    expected["bad_cursor"] += 1
                else:  # in history only: met by a resume, which skips it
                    pipe.xadd(keys[0], rng.choice([{"x": b"1"}, {"e": b"{oops"}, {"e": rng.randbytes(20)}]))
                    stream_only += 1
            results = pipe.execute()
            good_cursors.extend(results[position].decode() for position in good_at)
            await _until(lambda: server.xlen(deadletters) >= sum(expected.values()), 30)
        frames += await collect(ws, len(good_cursors) - 1, timeout=30)
        frames += await quiet(ws, 0.3)
        await ws.close()
        again = await connect(hub.ws, token, {"type": "subscribe", "resume_from": first_cursor})
        replayed = await collect(again, len(good_cursors) - 1, timeout=30)
        replayed += await quiet(again, 0.3)
        await again.close()
        return frames, replayed

    live, replayed = asyncio.run(scenario())
    assert len(good_cursors) == 1 + TOTAL_BAD // GOOD_EVERY
    assert [f["cursor"] for f in live] == good_cursors, "every good event, once, in order"
    assert [f["cursor"] for f in replayed] == good_cursors[1:], "a resume across the junk skips it"
    reasons = Counter(fields[b"reason"].decode() for _, fields in server.xrange(deadletters))
    assert reasons == expected
    assert sum(expected.values()) + stream_only + TOTAL_BAD // GOOD_EVERY == TOTAL_BAD
    assert hub.process is not None and hub.process.poll() is None
    assert httpx.get(f"{hub.http}/readyz", timeout=5).status_code == 200


async def _until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    await async_wait_until(predicate, timeout, "the hub did not keep up")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
lms_shaped = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values | st.sampled_from(["problem_check", ""]),
        "event_type": json_values,
        "timestamp": json_values | st.just("2026-11-25T10:00:00+00:00"),
        "time": json_values,
        "data": json_values | st.builds(lambda n: "x" * n, st.integers(MAX_EVENT_BYTES, MAX_EVENT_BYTES + 10)),
        "event": json_values | st.just("{not json"),
        "context": json_values | st.fixed_dictionaries({"user_id": json_values}),
        "username": json_values,
    },
)
hostile = (
    lms_shaped
    | json_values
    | st.builds(lambda d: {**_VALID, "data": {"s": "\ud800" + d}}, st.text(max_size=5))  # not encodable
    | st.builds(lambda n: {**_VALID, "data": _nest(n)}, st.integers(300, 2000))
    | st.builds(lambda k: {**_VALID, "data": {k: 1}}, st.integers() | st.tuples(st.integers()))
)


def _nest(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_the_publisher_refuses_malformed_events_with_counts(redis_server: RedisServer, prefix: str) -> None:
    backend = RealtimeBackend(
        redis_url=redis_server.url, redis_prefix=prefix, preemptive=False, spool_max_bytes=0, timeout=SEND_TIMEOUT,
    )
    stream = redis.Redis.from_url(redis_server.url)
    seen = {"calls": 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile)
    @example({**_VALID, "data": {"answer": "x" * MAX_EVENT_BYTES}})  # one of each refusal, whatever is drawn
    @example({**_VALID, "context": {}})
    @example({"name": 5})
    @example({**_VALID, "data": "[" * 2000 + "]" * 2000})  # a browser payload too deep for json to parse
    @example({**_VALID, "data": _nested(300)})  # too deep for orjson to write
    def send_one(event: object) -> None:
        seen["calls"] += 1
        started = time.perf_counter()
        cursor = backend.send(event)  # type: ignore[arg-type]
        assert time.perf_counter() - started < 1.0
        if cursor is not None:  # accepted: then it is a well-formed event the hub can carry
            stored = stream.xrange(rkeys.stream_key(rkeys.Prefix(prefix)), min=cursor, max=cursor)[0][1][b"e"]
            assert len(stored) <= MAX_EVENT_BYTES
            assert isinstance(orjson.loads(stored)["context"], dict)

    send_one()
    counts = backend.counts
    refused = counts["malformed"] + counts["oversize"] + counts["no_user"]
    assert counts["failed"] == 0, "every refusal has a named reason"
    assert counts["published"] + refused == seen["calls"]
    assert counts["malformed"] > 0 and counts["oversize"] > 0 and counts["no_user"] > 0
    backend.close()
