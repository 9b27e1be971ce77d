"""`--dry-run` counts what the client's grant and the time window let through, and a real run delivers
exactly that to the client's webhook, signed with its secret."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

from rthub_client import verify

from auth.clients import Client
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.redis import client as redis_client
from rthub_lms import keys
from tests.hub.backfill.helpers import START, backfill, history, write_log
from tests.hub.delivery.webhook.receiver import Receiver, Reply
from tests.servers import RedisServer

COURSE = "course-v1:MITx+6.002x+2026_T1"
GRANT = [{"courses": [COURSE], "event_types": ["problem_check", "*video*"]}]


def create(settings: Settings, **fields: object) -> Client:
    async def run() -> Client:
        redis = redis_client(settings.redis_url)
        try:
            client, _ = await ClientRegistry(redis, settings).create(
                name="history", type="adaptive", translator="caliper", **fields)
            return client
        finally:
            await redis.aclose()

    return asyncio.run(run())


def environment(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    return {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix,
            "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}


def table(report: str) -> dict[str, tuple[int, int, int, int]]:
    """The dry run's rows: event name -> (granted, filtered, untranslatable, unreadable)."""
    rows = {}
    for line in report.split("\n\n")[0].splitlines()[1:]:
        *name, granted, filtered, untranslatable, unreadable = line.split()
        rows[" ".join(name)] = (int(granted), int(filtered), int(untranslatable), int(unreadable))
    return rows


def test_dry_run_counts_what_the_grant_allows_and_the_run_delivers_it_signed(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    env = environment(redis_server, prefix)
    settings = Settings.from_env(env)
    events = history(600, seed=11)
    logs = tmp_path / "logs"
    logs.mkdir()
    write_log(logs / "tracking.log-1.gz", events[:350])
    write_log(logs / "tracking.log", events[350:], [b"[1, 2]\n", b"\xff\xfe not utf-8\n"])
    since, until = START + timedelta(minutes=100), START + timedelta(minutes=500)
    granted, filtered, reasons = Counter(), Counter(), Counter()
    for number, event in enumerate(events):
        name = event.get("name") or event["event_type"]
        allowed = event["context"]["course_id"] == COURSE and (name == "problem_check" or "video" in name)
        reason = ("before --since" if number < 100 else "at or after --until" if number >= 500
                  else "" if allowed else "not in the client's grant")
        (filtered if reason else granted)[name] += 1
        if reason:
            reasons[f"{name}: filtered, {reason}"] += 1

    with Receiver() as receiver:
        client = create(settings, delivery="webhook", webhook_url=receiver.url, grant=GRANT)
        window = ("--since", since.isoformat(), "--until", until.isoformat().replace("+00:00", "Z"))
        dry = backfill(env, "--client", client.client_id, *window, "--dry-run", str(logs))
        assert dry.returncode == 0, dry.stderr
        rows = table(dry.stdout)
        total = rows.pop("total")
        assert {name: row[0] for name, row in rows.items() if row[0]} == dict(granted)
        assert {name: row[1] for name, row in rows.items() if row[1]} == dict(filtered)
        assert rows["(unreadable line)"][3] == 2 and total == (granted.total(), filtered.total(), 0, 2)
        listed = dict(line.strip().rsplit(": ", 1) for line in dry.stdout.split("reasons:\n")[1].splitlines())
        assert {reason: int(count) for reason, count in listed.items() if ": filtered, " in reason} == reasons
        assert not receiver.requests, "a dry run sends nothing"

        done = backfill(env, "--client", client.client_id, *window, "--batch-size", "10", str(logs))
        assert done.returncode == 0, done.stderr
        total = granted.total()
        assert total > 50 and len(receiver.requests) == -(-total // 10)
        delivered = []
        for request in receiver.requests:
            body = verify(request.body, request.headers, client.webhook_secret)  # raises unless signed by the hub
            assert body["type"] == "batch"
            assert request.headers["webhook-id"].startswith("msg_backfill-")
            delivered += body["events"]
        assert [frame["cursor"] for frame in delivered] == [f"0-{n}" for n in range(1, total + 1)]
        assert Counter(frame["event_type"] for frame in delivered) == granted
        assert all(frame["data"]["type"].endswith("Event") for frame in delivered)  # Caliper, its translator
        assert len({request.headers["webhook-id"] for request in receiver.requests}) == len(receiver.requests)
        anonymised = {value.decode() for value in redis_server.client().hvals(keys.anon_key(settings, "adaptive"))}
        actors = {frame["data"]["actor"]["id"].rsplit("/", 1)[1] for frame in delivered}
        assert actors and actors <= anonymised  # the learners' ids from the store the hub uses


def test_events_an_endpoint_refuses_for_good_end_the_run_with_status_4_and_their_reason(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A 400 for each statement (after the batch is split down to one) is final: not sent again, counted,
    its reason printed, and the command's status says not everything was delivered."""
    env = environment(redis_server, prefix)
    settings = Settings.from_env(env)
    log = write_log(tmp_path / "tracking.log", history(40, seed=13))
    with Receiver(lambda n: Reply(400, {}, b'{"detail": "statement refused by this LRS"}')) as receiver:
        client = create(settings, delivery="caliper-endpoint", endpoint_url=receiver.url, endpoint_token="t",
                        grant=[{}])
        done = backfill(env, "--client", client.client_id, "--quiet", str(log))
        posts = len(receiver.requests)
    refused = int(done.stderr.split(" refused)")[0].rsplit("(", 1)[1].split()[-1])
    assert done.returncode == 4, done.stderr
    assert refused > 0 and f"the endpoint refused {refused} events for good" in done.stderr
    assert "HTTP 400" in done.stderr and "statement refused by this LRS" in done.stderr
    assert posts >= refused  # each refused statement was tried on its own once, and not again


def test_an_lms_external_id_client_gets_the_mirrored_ids_and_never_another_id(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """The plug-in mirrored the LMS's external ids of some learners: their backfilled events name those ids;
    the others' events are not sent under any other id, and the command's status and words say so."""
    import redis as sync_redis

    from rthub_lms.external_ids import ExternalIdMirror

    env = environment(redis_server, prefix)
    settings = Settings.from_env(env)
    events = history(120, seed=17)
    learners = sorted({str(e["context"]["user_id"]) for e in events if e["context"].get("user_id") is not None})
    mirrored = {learner: f"ext-{learner}" for learner in learners[: len(learners) // 2]}
    plain = sync_redis.Redis.from_url(redis_server.url)
    mirror = ExternalIdMirror(plain, settings, lookup=lambda user_id, type_name: mirrored.get(user_id))
    for learner in learners:
        mirror.ensure(learner, ["caliper"])
    plain.close()
    log = write_log(tmp_path / "tracking.log", events)
    with Receiver() as receiver:
        client = create(settings, delivery="webhook", webhook_url=receiver.url, grant=[{}], actor="lms-external-id")
        done = backfill(env, "--client", client.client_id, "--quiet", "--batch-size", "1", str(log))
        frames = [request.json for request in receiver.requests]
    named = {frame["data"]["actor"]["id"].rsplit("/", 1)[-1] for frame in frames}
    assert frames and named <= set(mirrored.values()), named
    assert done.returncode == 4, done.stderr
    assert "have no external id mirrored" in done.stderr and "--restart" in done.stderr
