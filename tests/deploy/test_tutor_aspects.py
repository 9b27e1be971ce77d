"""The plugin next to the real tutor-contrib-aspects 6.1.0: the Aspects client in the init task and the
reference's xAPI routing turned off, rendered by Tutor, then the rendered init task run against a real
hub, Redis and Ralph LRS (`RalphServer`, standing in for Aspects' own Ralph at `ralph:8100`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from rthub_lms import RealtimeBackend
from rthub_lms.external_ids import ExternalIdMirror
from tests import SEND_TIMEOUT
from tests.deploy.tutor import TutorProject, local_env, serve, tutor_venv
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(900), pytest.mark.deploy, pytest.mark.slow, pytest.mark.peers]

RALPH_IN_TUTOR = "http://ralph:8100/xAPI/"
WITH_RALPH = ("RUN_RALPH=true", "ASPECTS_XAPI_SOURCE=ralph")


@pytest.fixture(scope="module")
def tutor_bin() -> Path:
    return tutor_venv()


@pytest.fixture(scope="module")
def project(tutor_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> TutorProject:
    project = TutorProject(tutor_bin, tmp_path_factory.mktemp("tutor-aspects"))
    project.save(*WITH_RALPH, plugins=("rthub", "aspects"))
    return project


def _wired(project: TutorProject) -> bool:
    """Whether the rendered project sends Aspects its statements; the three places must agree."""
    init = "aspects-ralph" in project.init_task("rthub")
    settings = "XAPI_EVENTS_ENABLED = False" in project.read("apps", "openedx", "settings", "lms", "production.py")
    mirrored = "python -m rthub_lms.external_ids --type xapi" in project.init_task("lms")
    assert init == settings == mirrored, "the client, the reference's routing and the id mirror switch together"
    return init


@pytest.mark.parametrize(("plugins", "settings", "wired"), [
    (("rthub", "aspects"), (), False),  # Aspects' default: Vector reads the reference's statements from logs
    (("rthub", "aspects"), ("ASPECTS_XAPI_SOURCE=ralph",), True),
    (("rthub", "aspects"), (*WITH_RALPH, "RTHUB_ASPECTS=false"), False),
    (("rthub", "aspects"), ("RTHUB_ASPECTS=true",), True),
    (("rthub",), ("RTHUB_ASPECTS=true",), False),  # no Aspects, no RALPH_* settings
], ids=["aspects-vector", "aspects-ralph", "forced-off", "forced-on", "no-aspects"])
def test_wiring_follows_the_setting_and_aspects_source(
    tutor_bin: Path, tmp_path: Path, plugins: tuple[str, ...], settings: tuple[str, ...], wired: bool
) -> None:
    project = TutorProject(tutor_bin, tmp_path / "root")
    project.save(*settings, plugins=plugins)
    assert _wired(project) is wired


def test_rendered_step_targets_aspects_ralph_with_its_lms_credentials(project: TutorProject) -> None:
    script = project.init_task("rthub")
    assert f'--endpoint-url "{RALPH_IN_TUTOR}"' in script
    assert f'--endpoint-username "{project.printvalue("RALPH_LMS_USERNAME")}"' in script
    assert f'--endpoint-password "{project.printvalue("RALPH_LMS_PASSWORD")}"' in script
    assert "--delivery lrs" in script and "--batch-size 100" in script and "--actor lms-external-id" in script
    env = local_env(project, "redis://127.0.0.1:1/0")
    # Aspects' Ralph is on the private network: its name alone may resolve to a private address
    assert (env["RTHUB_WEBHOOK_ALLOW_PRIVATE"], env["RTHUB_WEBHOOK_PRIVATE_HOSTS"]) == ("false", "ralph")


def _needs_actor_option(env: dict[str, str]) -> None:
    """The step names each learner by the LMS's external id (`--actor lms-external-id`), an option of
    `rthub clients create` that another branch adds; without it the rendered step cannot run here."""
    help_text = subprocess.run(["rthub", "clients", "create", "--help"], env=env, capture_output=True,
                               text=True, check=True).stdout
    if "--actor" not in help_text:
        pytest.skip("`rthub clients create` has no --actor option (lms-external-id) in this tree")


def _clients(env: dict[str, str]) -> list[dict[str, Any]]:
    listed = subprocess.run(["rthub", "clients", "list", "--json"], env=env, capture_output=True, text=True, check=True)
    return json.loads(listed.stdout)["clients"]


def test_rendered_init_creates_then_updates_the_client_and_statements_reach_ralph(
    project: TutorProject, own_redis: RedisServer, tmp_path: Path
) -> None:
    ralph = RalphServer(tmp_path / "ralph", project.printvalue("RALPH_LMS_USERNAME"),
                        project.printvalue("RALPH_LMS_PASSWORD"))
    ralph.start()
    try:
        # Aspects' Ralph answers at ralph:8100 in the deployment; here the test's Ralph, named
        # `localhost` and allowed as the rendered setting allows `ralph`.
        assert local_env(project, own_redis.url)["RTHUB_WEBHOOK_PRIVATE_HOSTS"] == "ralph"
        ralph_url = ralph.endpoint.replace("127.0.0.1", "localhost")
        with serve(project, own_redis.url, tmp_path / "hub.log", {"RTHUB_WEBHOOK_PRIVATE_HOSTS": "localhost"}) as (
            _, env
        ):
            _needs_actor_option(env)
            script = project.init_task("rthub").replace(RALPH_IN_TUTOR, ralph_url)
            first = subprocess.run(["sh", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=120)
            assert first.returncode == 0, first.stderr
            assert "client aspects-ralph (" in first.stdout and ") created" in first.stdout
            assert project.printvalue("RALPH_LMS_PASSWORD") not in first.stdout + first.stderr

            (client,) = [c for c in _clients(env) if c["name"] == "aspects-ralph"]
            subprocess.run(["rthub", "clients", "update", client["client_id"], "--batch-size", "7"], env=env,
                           check=True, capture_output=True)
            again = subprocess.run(["sh", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=120)
            assert again.returncode == 0, again.stderr
            assert f"client aspects-ralph ({client['client_id']}) updated" in again.stdout
            (client,) = [c for c in _clients(env) if c["name"] == "aspects-ralph"]
            assert (client["delivery"], client["translator"], client["grant"]) == ("lrs", "xapi", [{}])
            assert (client["endpoint_url"], client["endpoint_username"]) == (ralph_url, ralph.username)
            assert client["endpoint_credential_set"] and client["webhook_batch_max"] == 100

            # The LMS plug-in mirrors each learner's xapi ExternalId before the event (edx-platform's
            # `external_user_ids` in a real LMS; here a lookup standing in for it, as its tests do).
            events = [SimulatedLMS(seed=11).next_event() for _ in range(40)]
            learners = {str(e["context"]["user_id"]) for e in events if e["context"].get("user_id") is not None}
            external = {learner: f"xapi-{learner}" for learner in learners}
            plain = redis.Redis.from_url(env["RTHUB_REDIS_URL"])
            mirror = ExternalIdMirror(plain, Settings(redis_prefix=env["RTHUB_REDIS_PREFIX"]),
                                      lookup=lambda user_id, id_type: external.get(user_id))
            for learner in learners:
                mirror.ensure(learner, ["xapi"])
            plain.close()
            backend = RealtimeBackend(redis_url=env["RTHUB_REDIS_URL"], redis_prefix=env["RTHUB_REDIS_PREFIX"],
                                      timeout=SEND_TIMEOUT, external_ids=False)
            deadline = time.monotonic() + 20
            while not backend.send(events[0]) and time.monotonic() < deadline:
                time.sleep(0.1)  # the preemptive filter learns of the new client within moments
            for event in events[1:]:
                assert backend.send(event)
            wait_until(lambda: len(ralph.statements()) >= 20, 60, "the statements did not reach Ralph")
            statements = ralph.statements()
            assert len({s["id"] for s in statements}) == len(statements) <= len(events)
            assert {s["actor"]["account"]["homePage"] for s in statements} == {env["RTHUB_LMS_ROOT_URL"]}
            assert {s["actor"]["account"]["name"] for s in statements} <= set(external.values())
    finally:
        ralph.stop()
