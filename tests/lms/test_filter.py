"""The LMS-side preemptive filter against a real redis-server: union of active grants, live refresh."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub.config import Settings
from rthub_lms import keys as rkeys
from rthub_lms.events import Event
from rthub_lms.filter import PreemptiveFilter
from tests.servers import RedisServer, free_port

MITX = "course-v1:MITx+6.002x+2024_T1"
HARVARD = "course-v1:HarvardX+CS50+2024"
EDX = "course-v1:edX+DemoX+Demo_Course"


def event(course: str, name: str = "problem_check", user: int = 5) -> Event:
    return Event(
        name=name,
        timestamp="2024-05-01T10:00:00+00:00",
        data={},
        context={"course_id": course, "user_id": user, "host": "lms.example.com"},
    )


def put_client(
    client: redis.Redis,
    settings: Settings,
    client_id: str,
    grant: Any,
    status: str = "active",
    notify: bool = True,
) -> None:
    """Write the grants projection the way the registry does (active clients only), then a change notice."""
    raw = grant if isinstance(grant, str) else json.dumps(grant)
    if status == "active":
        client.hset(rkeys.active_grants_key(settings), client_id, raw)
    else:
        client.hdel(rkeys.active_grants_key(settings), client_id)
    if notify:
        client.publish(rkeys.changes_channel(settings), client_id)


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until `predicate` held; fails the test after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(0.005)  # a fine poll: the seconds it returns are asserted on
    return time.monotonic() - start


@pytest.fixture
def settings(redis_server: RedisServer, prefix: str) -> Settings:
    return Settings(redis_url=redis_server.url, redis_prefix=prefix)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis_server.client()
    yield connection
    connection.close()


def started(client: redis.Redis, settings: Settings, refresh_interval: float = 60.0) -> PreemptiveFilter:
    preemptive = PreemptiveFilter(client, settings, refresh_interval=refresh_interval)
    preemptive.start()
    wait_for(lambda: preemptive.loaded, 5)
    return preemptive


def test_fails_open_until_loaded() -> None:
    dead = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.2)
    preemptive = PreemptiveFilter(dead, Settings(redis_prefix="t:dead:"))
    assert preemptive.wanted(event(MITX))
    preemptive.start()
    try:
        time.sleep(0.5)  # a window: a load (there is no Redis) would have happened by now
        assert not preemptive.loaded
        assert preemptive.wanted(event(MITX))
        assert preemptive.wanted(event(HARVARD, name="anything.at.all"))
    finally:
        preemptive.close()


def test_no_clients_means_nothing_is_wanted(client: redis.Redis, settings: Settings) -> None:
    preemptive = started(client, settings)
    try:
        assert not preemptive.wanted(event(MITX))
    finally:
        preemptive.close()


def test_union_of_active_grants_only(client: redis.Redis, settings: Settings) -> None:
    put_client(client, settings, "mit", [{"courses": ["course-v1:MITx+*"]}])
    put_client(client, settings, "video", [{"orgs": ["HarvardX"], "event_types": ["edx.video."]}])
    put_client(client, settings, "gone", [{}], status="revoked")
    put_client(client, settings, "broken", "[{not json")
    put_client(client, settings, "invalid", [{"courses": []}])
    preemptive = started(client, settings)
    try:
        assert preemptive.wanted(event(MITX))
        assert preemptive.wanted(event(HARVARD, name="edx.video.played"))
        assert not preemptive.wanted(event(HARVARD, name="problem_check"))
        assert not preemptive.wanted(event(EDX))
    finally:
        preemptive.close()


def test_changes_take_effect_within_one_second(client: redis.Redis, settings: Settings) -> None:
    put_client(client, settings, "mit", [{"orgs": ["MITx"]}])
    # The timer is far away: only the change notice can explain a prompt update.
    preemptive = started(client, settings, refresh_interval=600)
    try:
        assert not preemptive.wanted(event(EDX))
        put_client(client, settings, "demo", [{"courses": [EDX]}])
        assert wait_for(lambda: preemptive.wanted(event(EDX)), 1.0) < 1.0

        put_client(client, settings, "demo", [{"courses": [HARVARD]}])
        wait_for(lambda: not preemptive.wanted(event(EDX)), 1.0)
        assert preemptive.wanted(event(HARVARD))

        put_client(client, settings, "demo", [{"courses": [HARVARD]}], status="revoked")
        wait_for(lambda: not preemptive.wanted(event(HARVARD)), 1.0)
        assert preemptive.wanted(event(MITX))
    finally:
        preemptive.close()


def test_timer_reload_catches_a_missed_notice(client: redis.Redis, settings: Settings) -> None:
    preemptive = started(client, settings, refresh_interval=0.3)
    try:
        assert not preemptive.wanted(event(EDX))
        put_client(client, settings, "quiet", [{"courses": [EDX]}], notify=False)
        wait_for(lambda: preemptive.wanted(event(EDX)), 3.0)
    finally:
        preemptive.close()


def test_works_with_decoded_responses(redis_server: RedisServer, settings: Settings) -> None:
    decoded = redis.Redis.from_url(redis_server.url, decode_responses=True)
    put_client(decoded, settings, "mit", [{"users": [5]}])
    preemptive = started(decoded, settings)
    try:
        assert preemptive.wanted(event(EDX, user=5))
        assert not preemptive.wanted(event(EDX, user=6))
    finally:
        preemptive.close()
        decoded.close()


@pytest.mark.parametrize("retries", ["redis-py default retries", "no retries"])
def test_recovers_after_redis_restart(own_redis: RedisServer, prefix: str, retries: str) -> None:
    """Recovery must not depend on the redis-py retry policy the LMS happens to configure."""
    settings = Settings(redis_url=own_redis.url, redis_prefix=prefix)
    if retries == "no retries":
        client = redis.Redis.from_url(own_redis.url, retry=Retry(NoBackoff(), 0))
    else:
        client = own_redis.client()
    put_client(client, settings, "mit", [{"orgs": ["MITx"]}])
    preemptive = started(client, settings)
    try:
        own_redis.stop()
        # While Redis is down the last known union stays in force.
        time.sleep(1.0)  # time passing: Redis stays down
        assert preemptive.wanted(event(MITX))
        assert not preemptive.wanted(event(EDX))
        own_redis.start()
        put_client(client, settings, "demo", [{"courses": [EDX]}])
        wait_for(lambda: preemptive.wanted(event(EDX)), 15.0)
        assert preemptive.wanted(event(MITX))
    finally:
        preemptive.close()
        client.close()
