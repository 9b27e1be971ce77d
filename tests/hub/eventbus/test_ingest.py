"""`rthub ingest event-bus` against the real producer chain (event-tracking -> openedx-events ->
edx-event-bus-redis) writing to a real redis-server: parity with the plug-in, crashes, bad messages, Redis
restarts, and the whole way to a WebSocket consumer of a real hub."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime

import pytest
import redis
from openedx_events.analytics.data import TrackingLogData
from openedx_events.analytics.signals import TRACKING_EVENT_EMITTED
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.simulator import COURSES, SimulatedLMS
from hub.eventbus.consumer import EventBusIngest, IngestOptions
from hub.eventbus.decode import TrackingDecoder
from hub.eventbus.sink import OnceWriter, Publish
from hub.redis import client as redis_client
from rthub_lms import keys
from rthub_lms.filter import PreemptiveFilter
from rthub_lms.settings import PluginSettings
from tests.hub.eventbus.procs import Ingest, events_key, produce, produced, rthub_events, seqs, topic_prefix, wait_for
from tests.hubproc import Hub
from tests.servers import RedisServer
from tests.wsclient import collect, connect, quiet

GROUP = "rthub"


def bus_stream(prefix: str) -> str:
    return f"{topic_prefix(prefix)}-analytics"


def pending(client: redis.Redis, prefix: str) -> int:
    return client.xpending(bus_stream(prefix), GROUP)["pending"]


def counts(summary: str) -> dict[str, int]:
    """The ingest's closing line `rthub ingest: stopped; name n, name n` as a dict."""
    line = next(line for line in summary.splitlines() if "stopped;" in line)
    pairs = (item.rsplit(" ", 1) for item in line.split("stopped; ", 1)[1].split(", "))
    return {name: int(count) for name, count in pairs}


def bus_message(log: TrackingLogData, event_type: str = TRACKING_EVENT_EMITTED.event_type) -> dict[bytes, bytes]:
    """A message laid out as edx-event-bus-redis lays it out, encoded with openedx-events' own serializer."""
    return {
        b"type": event_type.encode(), b"id": b"00000000-0000-0000-0000-000000000001", b"source": b"openedx/test/web",
        b"time": b"2026-11-29T10:00:00+00:00", b"minorversion": b"0", b"sourcehost": b"test", b"sourcelib": b"10.5.0",
        b"event_data": serialize_event_data_to_bytes({"tracking_log": log}, TRACKING_EVENT_EMITTED),
    }


def test_events_arrive_normalised_exactly_as_the_plugin_writes_them(redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    direct = f"{prefix}direct:"
    with Ingest(redis_server.url, prefix, "--no-preemptive") as ingest:
        produced(produce(redis_server.url, prefix, 300, direct_prefix=direct))
        wait_for(lambda: client.xlen(events_key(prefix)) == 300, 30, "300 events through the bus")
        summary = ingest.stop()
    through_bus, direct_path = rthub_events(client, prefix), rthub_events(client, direct)
    assert seqs(through_bus) == list(range(300))
    assert through_bus == direct_path
    assert client.xlen(bus_stream(prefix)) == 300
    assert pending(client, prefix) == 0
    assert counts(summary)["published"] == 300
    assert not client.exists(keys.eventbus_applied(PluginSettings(redis_prefix=prefix), bus_stream(prefix), GROUP))


@pytest.mark.slow
def test_a_new_group_starts_at_new_messages_unless_told_to_start_from_the_oldest(
    redis_server: RedisServer, prefix: str
) -> None:
    client = redis_server.client()
    produced(produce(redis_server.url, prefix, 3))
    with Ingest(redis_server.url, prefix, "--no-preemptive", from_start=False) as ingest:
        wait_for(lambda: bool(client.xinfo_groups(bus_stream(prefix))), 30, "the group created")
        produced(produce(redis_server.url, prefix, 3, first=3))
        wait_for(lambda: client.xlen(events_key(prefix)) >= 3 and pending(client, prefix) == 0, 30, "new ones")
        ingest.stop()
    assert seqs(rthub_events(client, prefix)) == [3, 4, 5]


@pytest.mark.slow
@pytest.mark.parametrize("renamed", [False, True], ids=["same-name", "new-name"])
def test_sigkill_mid_way_loses_nothing_and_appends_nothing_twice(
    redis_server: RedisServer, prefix: str, renamed: bool
) -> None:
    """Killed three times while the LMS keeps producing; restarted under the same name (its own pending
    messages come first, so order holds) or a new one each time (it claims the dead consumers' idle
    pending messages, which then arrive after newer ones)."""
    client = redis_server.client()
    total = 3000
    options = ("--no-preemptive", "--batch", "20", "--claim-idle-ms", "300")
    lms = produce(redis_server.url, prefix, total, rate=1500)
    left_pending = []
    for run, threshold in enumerate((300, 1000, 1700)):
        ingest = Ingest(redis_server.url, prefix, *options, consumer=f"ingest-{run if renamed else 0}").start()
        try:
            wait_for(lambda: client.xlen(events_key(prefix)) >= threshold, 30, "the ingest under way")  # noqa: B023
        finally:
            ingest.kill()
        left_pending.append(pending(client, prefix))
    assert client.xlen(events_key(prefix)) < total
    with Ingest(redis_server.url, prefix, *options, consumer="ingest-9" if renamed else "ingest-0") as last:
        produced(lms)
        wait_for(lambda: client.xlen(events_key(prefix)) >= total and pending(client, prefix) == 0, 60,
                 "every event appended and acknowledged")
        summary = last.stop()
    numbers = seqs(rthub_events(client, prefix))
    assert sorted(numbers) == list(range(total)), f"lost {set(range(total)) - set(numbers)}"
    assert len(numbers) == total, "duplicates"
    if not renamed:
        assert numbers == list(range(total))
    print(f"pending at each kill: {left_pending}; last run: {summary.strip().splitlines()[-1]}")
    assert not client.exists(keys.eventbus_deadletters(PluginSettings(redis_prefix=prefix)))


def test_messages_a_dead_consumer_left_pending_are_claimed_first(redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    stream = bus_stream(prefix)
    produced(produce(redis_server.url, prefix, 10))
    client.xgroup_create(stream, GROUP, id="0")
    assert len(client.xreadgroup(GROUP, "dead-consumer", {stream: ">"}, count=6)[0][1]) == 6
    time.sleep(0.3)  # time passing: the dead consumer's messages idle past the 200 ms claim threshold
    with Ingest(redis_server.url, prefix, "--no-preemptive", "--claim-idle-ms", "200") as ingest:
        wait_for(lambda: client.xlen(events_key(prefix)) == 10 and pending(client, prefix) == 0, 30, "all handled")
        summary = ingest.stop()
    assert seqs(rthub_events(client, prefix)) == list(range(10))
    assert counts(summary)["claimed"] == 6


def test_a_message_appended_but_not_acknowledged_is_acknowledged_without_a_second_append(
    redis_server: RedisServer, prefix: str
) -> None:
    """The crash window between append and ack, made on purpose: messages read by `ingest-1` and appended
    with the ingest's own writer, never acknowledged; the restarted ingest appends only the rest."""
    client = redis_server.client()
    stream = bus_stream(prefix)
    produced(produce(redis_server.url, prefix, 5))
    client.xgroup_create(stream, GROUP, id="0")
    entries = client.xreadgroup(GROUP, "ingest-1", {stream: ">"}, count=5)[0][1]
    settings = PluginSettings(redis_prefix=prefix)
    writer, decoder = OnceWriter(client, settings, stream, GROUP), TrackingDecoder()
    written = writer.write_batch([Publish(raw_id.decode(), json.dumps(decoder.decode(fields)).encode())
                                  for raw_id, fields in entries[:3]])
    assert [item.fresh for item in written] == [True, True, True]
    assert pending(client, prefix) == 5
    with Ingest(redis_server.url, prefix, "--no-preemptive") as ingest:
        wait_for(lambda: pending(client, prefix) == 0, 30, "pending messages handled")
        summary = ingest.stop()
    assert seqs(rthub_events(client, prefix)) == [0, 1, 2, 3, 4]
    assert counts(summary)["published"] == 2
    assert counts(summary)["published_before"] == 3
    assert writer.applied() == []


def test_bad_messages_are_dead_lettered_with_a_reason_and_acknowledged(redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    stream = bus_stream(prefix)
    produced(produce(redis_server.url, prefix, 3))
    now = datetime.fromisoformat("2026-11-29T10:00:00+00:00")
    good = {"user_id": 5, "course_id": "course-v1:BusX+Ingest+2026"}
    bad = [
        ("bad-avro", {**bus_message(TrackingLogData("x", now, "{}", "{}")), b"event_data": b"\x00\xff\xfe garbage"}),
        ("missing-data", {b"type": TRACKING_EVENT_EMITTED.event_type.encode(), b"id": b"1"}),
        ("unknown-type", bus_message(TrackingLogData("x", now, "{}", "{}"), "org.openedx.learning.course.created.v1")),
        ("missing-type", {b"event_data": b"\x02x"}),
        ("bad-json", bus_message(TrackingLogData("problem_check", now, "{not json", json.dumps(good)))),
        ("malformed", bus_message(TrackingLogData("", now, "{}", json.dumps(good)))),
        ("malformed", bus_message(TrackingLogData("problem_check", now, json.dumps({"n": 2**70}), json.dumps(good)))),
        ("oversize", bus_message(TrackingLogData("problem_check", now, json.dumps({"b": "x" * 70_000}),
                                                 json.dumps(good)))),
    ]
    for _, fields in bad:
        client.xadd(stream, fields)
    client.xadd(stream, bus_message(TrackingLogData("problem_check", now, "{}", json.dumps({"course_id": "c"}))))
    produced(produce(redis_server.url, prefix, 3, first=3))
    with Ingest(redis_server.url, prefix, "--no-preemptive") as ingest:
        wait_for(lambda: client.xlen(events_key(prefix)) == 6 and pending(client, prefix) == 0, 30, "all handled")
        summary = ingest.stop()
    assert seqs(rthub_events(client, prefix)) == [0, 1, 2, 3, 4, 5]
    letters = client.xrange(keys.eventbus_deadletters(PluginSettings(redis_prefix=prefix)))
    assert [fields[b"reason"].decode() for _, fields in letters] == [reason for reason, _ in bad]
    for (_, fields), (_, sent) in zip(letters, bad, strict=True):
        assert fields[b"stream"].decode() == stream
        assert fields[b"detail"]
        assert fields[b"raw"] == sent.get(b"event_data", b"")[:4096]
    assert b"garbage" in letters[0][1][b"raw"]
    assert "is not org.openedx.analytics.tracking.event.emitted.v1" in letters[2][1][b"detail"].decode()
    summary_counts = counts(summary)
    assert summary_counts["deadlettered"] == len(bad)
    assert summary_counts["reason:malformed"] == 2
    assert summary_counts["no_user"] == 1
    assert summary_counts["published"] == 6


def test_json_nested_too_deep_is_dead_lettered_as_bad_json_and_counted_without_a_traceback(
    redis_server: RedisServer, prefix: str
) -> None:
    client = redis_server.client()
    now = datetime.fromisoformat("2026-11-29T10:00:00+00:00")
    good = json.dumps({"user_id": 5, "course_id": "course-v1:BusX+Ingest+2026"})
    deep, rather_deep = "[" * 2000 + "]" * 2000, "[" * 300 + "]" * 300  # past json's parser; past orjson's writer
    for data, context in [(deep, good), ("{}", '{"a": ' + deep + "}"), (rather_deep, good)]:
        client.xadd(bus_stream(prefix), bus_message(TrackingLogData("problem_check", now, data, context)))
    produced(produce(redis_server.url, prefix, 2))
    with Ingest(redis_server.url, prefix, "--no-preemptive") as ingest:
        wait_for(lambda: client.xlen(events_key(prefix)) == 2 and pending(client, prefix) == 0, 30, "all handled")
        summary = ingest.stop()
    letters = client.xrange(keys.eventbus_deadletters(PluginSettings(redis_prefix=prefix)))
    assert [fields[b"reason"] for _, fields in letters] == [b"bad-json"] * 3, letters
    assert b"nested" in letters[0][1][b"detail"] and b"254" in letters[2][1][b"detail"]
    assert counts(summary)["reason:bad-json"] == 3 and "reason:error" not in counts(summary)
    assert "Traceback" not in summary and "RecursionError" not in summary


def test_a_pending_message_trimmed_away_before_it_was_read_is_dead_lettered(
    redis_server: RedisServer, prefix: str
) -> None:
    client = redis_server.client()
    stream = bus_stream(prefix)
    produced(produce(redis_server.url, prefix, 4))
    client.xgroup_create(stream, GROUP, id="0")
    entries = client.xreadgroup(GROUP, "ingest-1", {stream: ">"}, count=4)[0][1]
    client.xdel(stream, entries[1][0])
    with Ingest(redis_server.url, prefix, "--no-preemptive") as ingest:
        wait_for(lambda: pending(client, prefix) == 0, 30, "pending handled")
        ingest.stop()
    assert seqs(rthub_events(client, prefix)) == [0, 2, 3]
    (letter,) = client.xrange(keys.eventbus_deadletters(PluginSettings(redis_prefix=prefix)))
    assert letter[1][b"reason"] == b"trimmed"
    assert letter[1][b"id"] == entries[1][0]


def test_redis_restart_under_the_ingest_costs_a_pause_not_an_event(own_redis: RedisServer, prefix: str) -> None:
    client = own_redis.client()
    with Ingest(own_redis.url, prefix, "--no-preemptive") as ingest:
        produced(produce(own_redis.url, prefix, 100))
        wait_for(lambda: client.xlen(events_key(prefix)) == 100, 30, "first 100")
        own_redis.restart()
        client = own_redis.client()
        produced(produce(own_redis.url, prefix, 100, first=100))
        wait_for(lambda: client.xlen(events_key(prefix)) == 200 and pending(client, prefix) == 0, 60, "all 200")
        summary = ingest.stop()
    assert seqs(rthub_events(client, prefix)) == list(range(200))
    assert counts(summary)["redis_errors"] >= 1


def test_bus_events_reach_a_websocket_consumer_and_the_preemptive_filter_drops_what_no_grant_sees(
    redis_server: RedisServer, prefix: str, hub: Hub
) -> None:
    total, seed, course = 60, 17, COURSES[0]
    simulated = SimulatedLMS(seed=seed)
    expected = sum(simulated.next_event()["context"]["course_id"] == course for _ in range(total))
    assert 0 < expected < total
    token = hub.token(grant=[{"courses": [course]}])

    async def receive() -> tuple[list[dict], list[dict], str]:
        ws = await connect(hub.ws, token)
        with Ingest(redis_server.url, prefix) as ingest:
            # the ingest says when its preemptive filter knows the active grants (the token's client's)
            await asyncio.to_thread(ingest.wait_for_line, "preemptive filter loaded", 30)
            produced(produce(redis_server.url, prefix, total, simulated=seed))
            frames = await collect(ws, expected, timeout=30)
            extra = await quiet(ws, 1.0)
            summary = ingest.stop()
        await ws.close()
        return frames, extra, summary

    frames, extra, summary = asyncio.run(receive())
    assert extra == []
    assert all(frame["type"] == "event" for frame in frames)
    assert len({frame["cursor"] for frame in frames}) == expected
    assert counts(summary)["published"] == expected
    assert counts(summary)["unwanted"] == total - expected


@pytest.mark.slow
def test_rthub_redis_down_while_the_bus_keeps_delivering_loses_nothing(
    redis_server: RedisServer, own_redis: RedisServer, prefix: str
) -> None:
    """The bus and rthub on separate Redis servers; rthub's stops while messages arrive on the bus. They
    stay pending (never acknowledged without their append) and arrive, in order, once it is back."""
    bus, target = redis_server.client(), own_redis.client()
    with Ingest(own_redis.url, prefix, "--no-preemptive", "--bus-url", redis_server.url) as ingest:
        produced(produce(redis_server.url, prefix, 50))
        wait_for(lambda: target.xlen(events_key(prefix)) == 50, 30, "first 50")
        own_redis.stop()
        produced(produce(redis_server.url, prefix, 50, first=50))
        wait_for(lambda: pending(bus, prefix) > 0, 30, "messages read while rthub's Redis is down")
        time.sleep(0.5)  # a window: a message acknowledged without its append would show by now
        assert pending(bus, prefix) > 0
        own_redis.start()
        target = own_redis.client()
        wait_for(lambda: target.xlen(events_key(prefix)) == 100 and pending(bus, prefix) == 0, 60, "all 100")
        summary = ingest.stop()
    assert seqs(rthub_events(target, prefix)) == list(range(100))
    assert counts(summary)["redis_errors"] >= 1
    assert bus.xlen(events_key(prefix)) == 0


def test_a_message_read_after_a_client_is_created_is_judged_by_its_grant_without_any_notice(
    redis_server: RedisServer, prefix: str
) -> None:
    """The ingest's filter loads the grants once and never hears a change notice (its threads are not
    started). Messages on the bus before any client are dropped as unwanted; those produced after a client
    that sees everything was created reach the stream: the interest version read after they were read off
    the bus shows the change its union missed."""
    client = redis_server.client()
    stream = bus_stream(prefix)
    settings = PluginSettings(redis_prefix=prefix)
    preemptive = PreemptiveFilter(redis_server.client(), settings)
    preemptive.reload()  # no client yet: the union wants nothing
    options = IngestOptions(stream, GROUP, "ingest-1", block_ms=100, start_id="0")
    ingest = EventBusIngest(client, OnceWriter(client, settings, stream, GROUP), options, TrackingDecoder(), preemptive)
    stop = threading.Event()
    worker = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    worker.start()
    try:
        produced(produce(redis_server.url, prefix, 5))
        wait_for(lambda: ingest.counts["unwanted"] == 5 and pending(client, prefix) == 0, 30, "5 dropped")

        async def create() -> None:
            hub_redis = redis_client(redis_server.url)
            try:
                registry = ClientRegistry(hub_redis, Settings(redis_url=redis_server.url, redis_prefix=prefix))
                await registry.create(name="everything", type="other", translator="xapi", grant=[{}])
            finally:
                await hub_redis.aclose()

        asyncio.run(create())
        produced(produce(redis_server.url, prefix, 5, first=5))
        wait_for(lambda: client.xlen(events_key(prefix)) == 5 and pending(client, prefix) == 0, 30, "5 published")
    finally:
        stop.set()
        worker.join(10)
    assert seqs(rthub_events(client, prefix)) == [5, 6, 7, 8, 9]
    # the first batch after the creation saw the version move (the union reloaded); later ones pass it
    assert ingest.counts["unwanted"] == 5 and ingest.counts["published"] == 5
    assert ingest.counts["wanted_after_change"] >= 1
