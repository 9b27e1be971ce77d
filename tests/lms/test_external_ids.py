"""`--actor lms-external-id`: the LMS's own external ids, mirrored by the real plug-in inside a Django LMS
(edx-platform's external_user_ids app stood in for, tests/lms/platform), reach a real Ralph LRS, a Caliper
webhook receiver and a WebSocket consumer; learners not yet seen are filled by `python -m rthub_lms.external_ids`;
a learner with no external id is dead-lettered, never sent under another id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from websockets.sync.client import connect

from hub.dev.simulator import SimulatedLMS
from hub.translate import supports
from rthub_lms import keys
from rthub_lms.backend import RealtimeBackend
from tests.hub.delivery.webhook.formats.helpers import HUB_ENV, admin_token, api, rthub, wait_for
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess
from tests.lms.lms_process import LmsProcess
from tests.servers import RedisServer

pytestmark = [pytest.mark.peers, pytest.mark.slow]

LEARNERS = "101-110"  # the simulated LMS's learners are 101..108; 109 and 110 never act


@pytest.fixture
def ralph(tmp_path: Path) -> Iterator[RalphServer]:
    """A real Ralph LRS (the one Aspects runs), stopped after the test."""
    server = RalphServer(tmp_path / "ralph")
    server.start()
    yield server
    server.stop()


def cli_client(hub: HubProcess, *args: str) -> str:
    created = rthub(hub, "clients", "create", "--type", "enterprise", "--grant", "{}", "--json", *args)
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)["client_id"]


def frames(ws, count: int, timeout: float = 20) -> list[dict]:  # type: ignore[no-untyped-def]
    """The next `count` event frames, or fail after `timeout` seconds."""
    found: list[dict] = []
    until = time.monotonic() + timeout
    while len(found) < count:
        frame = orjson.loads(ws.recv(timeout=max(0.01, until - time.monotonic())))
        if frame["type"] == "event":
            found.append(frame)
    return found


def users_by_cursor(hub: HubProcess) -> dict[str, str]:
    client = redis.Redis.from_url(hub.redis_url)
    try:
        rows = client.xrange(keys.stream_key(keys.Prefix(hub.prefix)))
    finally:
        client.close()
    return {cursor.decode(): str(orjson.loads(fields[b"e"])["context"]["user_id"]) for cursor, fields in rows}


def mirror(hub: HubProcess, type_name: str) -> dict[str, str]:
    client = redis.Redis.from_url(hub.redis_url, decode_responses=True)
    try:
        return client.hgetall(keys.external_ids_key(keys.Prefix(hub.prefix), type_name))
    finally:
        client.close()


def test_live_events_carry_the_lms_external_id_to_ralph_webhooks_and_sockets(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    hub.start()
    lms = LmsProcess(tmp_path, redis_server.url, prefix, LEARNERS)
    simulated = SimulatedLMS(seed=5)
    try:
        # Only while a client needs them: with anonymous clients alone, the LMS creates no external id.
        anonymous = hub.client(name="anonymous xapi", type="enterprise", translator="xapi")
        lms.start()
        for _ in range(5):
            lms.emit(simulated.next_event())
        lms.stop()
        assert lms.external_ids("xapi") == {} and lms.external_ids("caliper") == {}

        lrs_id = cli_client(hub, "--name", "Aspects Ralph", "--translator", "xapi", "--actor", "lms-external-id",
                            "--delivery", "lrs", "--endpoint-url", ralph.endpoint, "--endpoint-username",
                            ralph.username, "--endpoint-password", ralph.password, "--batch-size", "20",
                            "--batch-linger", "0.2")
        with Receiver() as receiver:
            hook_id = cli_client(hub, "--name", "Caliper hook", "--translator", "caliper", "--actor",
                                 "lms-external-id", "--delivery", "webhook", "--webhook-url", receiver.url)
            socket_id, socket_secret = hub.client(name="xapi socket", type="university", translator="xapi",
                                                  actor="lms-external-id")
            headers = {"Authorization": f"Bearer {hub.token_for(socket_id, socket_secret)}"}
            anon_headers = {"Authorization": f"Bearer {hub.token_for(*anonymous)}"}
            with connect(hub.ws, additional_headers=headers) as ws, \
                    connect(hub.ws, additional_headers=anon_headers) as anon_ws:
                for socket in (ws, anon_ws):
                    assert orjson.loads(socket.recv(timeout=5))["type"] == "welcome"
                    socket.send('{"type": "subscribe"}')
                lms.start()  # the LMS restarted: its plug-in learns which ids are needed at its first event
                events = [simulated.next_event() for _ in range(40)]
                for event in events:
                    lms.emit(event)
                translated = sum(supports("xapi", event["name"]) for event in events)
                live = frames(ws, translated)
                anonymous_frames = frames(anon_ws, translated)
            wait_for(lambda: sum(len(r.json["data"]) if isinstance(r.json["data"], list) else 1
                                 for r in receiver.requests) >= len(live), 30, "the Caliper webhooks")
            hooks = list(receiver.requests)
        wait_for(lambda: len(ralph.statements()) >= len(live), 60, "the statements in Ralph")
        statements = ralph.statements()
        lms.stop()
        xapi, caliper = lms.external_ids("xapi"), lms.external_ids("caliper")
        seen = {str(event["context"]["user_id"]) for event in events}
        learner_of = users_by_cursor(hub)
    finally:
        lms.stop()
        hub.stop()

    # The LMS created ids of both types for the learners that acted, and mirrored exactly those.
    assert set(xapi) == seen and set(caliper) == seen
    assert mirror(hub, "xapi") == xapi and mirror(hub, "caliper") == caliper
    assert len(set(xapi.values()) | set(caliper.values())) == 2 * len(seen)  # one id per user and type
    # The WebSocket consumer: every event's actor is that learner's xAPI external id, as the reference sends it.
    assert live
    for frame in live:
        actor = frame["data"]["actor"]
        assert actor == {"objectType": "Agent", "account": {"homePage": hub.settings.lms_root_url,
                                                             "name": xapi[learner_of[frame["cursor"]]]}}
    # Ralph holds the same statements, under the same actors.
    assert len(statements) == len(live) == translated
    assert {s["id"] for s in statements} == {frame["data"]["id"] for frame in live}
    assert {s["actor"]["account"]["name"] for s in statements} == {xapi[u] for u in seen}
    # The Caliper webhook: the learner's Caliper external id, in the reference's IRI.
    hooked = [frame for request in hooks for frame in (request.json if isinstance(request.json, list)
                                                        else [request.json])]
    assert hooked
    for frame in hooked:
        expected = f"{hub.settings.lms_root_url}/user/{caliper[learner_of[frame['cursor']]]}"
        assert frame["data"]["actor"]["id"] == expected
    # An anonymous client of the same hub still gets rthub's own ids, never the LMS's.
    assert anonymous_frames
    assert not {f["data"]["actor"]["account"]["name"] for f in anonymous_frames} & set(xapi.values())
    assert lrs_id and hook_id


def test_the_command_fills_the_mirror_and_a_learner_without_an_id_is_dead_lettered_visibly(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    hub.start()
    lms = LmsProcess(tmp_path, redis_server.url, prefix, LEARNERS)
    try:
        lms.start()  # creates the LMS's users
        lms.stop()
        nothing = lms.command()
        assert nothing.returncode == 0 and "no active client needs external ids" in nothing.stdout
        lrs_id = cli_client(hub, "--name", "Aspects Ralph", "--translator", "xapi", "--actor", "lms-external-id",
                            "--delivery", "lrs", "--endpoint-url", ralph.endpoint, "--endpoint-username",
                            ralph.username, "--endpoint-password", ralph.password)
        filled = lms.command()
        assert filled.returncode == 0, filled.stderr
        xapi = lms.external_ids("xapi")
        assert set(xapi) == {str(user) for user in range(101, 111)}  # every learner, never seen or not
        assert mirror(hub, "xapi") == xapi and lms.external_ids("caliper") == {}
        again = lms.command()
        assert again.returncode == 0 and "0 ids mirrored now" in again.stdout and lms.external_ids("xapi") == xapi

        # A learner the LMS mirrored nothing for (an event published without the plug-in's mirror).
        stranger = SimulatedLMS(seed=9).next_event()
        stranger["context"]["user_id"] = 4242
        outside = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False,
                                  external_ids=False, timeout=2.0)
        outside.send(stranger)
        outside.close()
        token = admin_token(hub)

        def dead() -> list[dict]:
            return api(hub, token, "GET", f"/deadletters?client_id={lrs_id}").json()["deadletters"]

        wait_for(lambda: bool(dead()), 30, "the no_external_id dead letter")
        letter = dead()[0]
        assert letter["reason"].startswith("no_external_id:") and "4242" in letter["reason"]
        assert letter["event_type"] == stranger["name"]
        assert hub.metric("rthub_webhook_no_external_id_total") == 1
        assert hub.metric("rthub_events_without_external_id_total") >= 1
        replayed = api(hub, token, "POST", "/deadletters/replay", json={"client_id": lrs_id})
        assert replayed.status_code == 200 and replayed.json()["replayed"] == 0  # nothing rendered to send again
        time.sleep(1.0)
        assert ralph.statements() == []
    finally:
        lms.stop()
        hub.stop()


def test_actor_is_validated_shown_and_settable_from_the_api(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env=HUB_ENV)
    hub.start()
    try:
        token = admin_token(hub)
        refused = api(hub, token, "POST", "/clients", json={"name": "x", "type": "other", "translator": "xapi",
                                                            "actor": "email"})
        assert refused.status_code == 422 and refused.json()["field"] == "actor"
        bad_cli = rthub(hub, "clients", "create", "--name", "x", "--type", "other", "--translator", "xapi",
                        "--actor", "email")
        assert bad_cli.returncode == 2
        created = api(hub, token, "POST", "/clients", json={"name": "x", "type": "other", "translator": "caliper"})
        client_id = created.json()["client_id"]
        assert created.json()["actor"] == "anonymous"
        updated = api(hub, token, "PATCH", f"/clients/{client_id}", json={"actor": "lms-external-id"})
        assert updated.status_code == 200 and updated.json()["actor"] == "lms-external-id"
        client = redis.Redis.from_url(hub.redis_url, decode_responses=True)
        try:
            projection = client.hgetall(keys.external_id_clients_key(keys.Prefix(hub.prefix)))
            assert projection.get(client_id) == "caliper"
            assert rthub(hub, "clients", "update", client_id, "--actor", "anonymous").returncode == 0
            assert client_id not in client.hgetall(keys.external_id_clients_key(keys.Prefix(hub.prefix)))
        finally:
            client.close()
        assert "actor: anonymous" in rthub(hub, "clients", "show", client_id).stdout
    finally:
        hub.stop()


def test_ids_that_waited_for_redis_reach_it_before_the_spooled_events_that_need_them(
    own_redis: RedisServer, ralph: RalphServer, tmp_path: Path
) -> None:
    """Redis goes away under a running LMS: new learners' ids wait in the LMS process, their events in
    the spool; when Redis is back the ids are written first, so every statement carries its id and
    nothing is dead-lettered."""
    prefix = "extid-outage:"
    hub = HubProcess(own_redis.url, prefix, env=HUB_ENV)
    hub.start()
    lms = LmsProcess(tmp_path, own_redis.url, prefix, LEARNERS)
    simulated = SimulatedLMS(seed=11)
    try:
        lrs_id = cli_client(hub, "--name", "Aspects Ralph", "--translator", "xapi", "--actor", "lms-external-id",
                            "--delivery", "lrs", "--endpoint-url", ralph.endpoint, "--endpoint-username",
                            ralph.username, "--endpoint-password", ralph.password, "--batch-size", "20")
        lms.start()
        events = []
        for learner in range(101, 109):
            event = simulated.next_event()
            event["context"]["user_id"] = learner
            if "user_id" in event["data"]:
                event["data"]["user_id"] = learner
            events.append(event)
        lms.emit(events[0])  # Redis up: the plug-in learns which ids are needed and mirrors learner 101
        own_redis.stop()
        for event in events[1:]:  # learners 102..108, first seen while Redis is away
            lms.emit(event)
        own_redis.start()
        translated = sum(supports("xapi", event["name"]) for event in events)
        wait_for(lambda: len(ralph.statements()) >= translated, 60, "every statement in Ralph")
        statements = ralph.statements()
        xapi = lms.external_ids("xapi")
        token = admin_token(hub)
        dead = api(hub, token, "GET", f"/deadletters?client_id={lrs_id}").json()["deadletters"]
    finally:
        lms.stop()
        hub.stop()
    assert set(xapi) == {str(learner) for learner in range(101, 109)}
    assert mirror(hub, "xapi") == xapi
    assert len(statements) == translated and dead == []
    assert {s["actor"]["account"]["name"] for s in statements} <= set(xapi.values())
