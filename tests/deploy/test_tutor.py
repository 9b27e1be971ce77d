"""The Tutor plugin under `tutor local`, rendered by the real Tutor 22.0.2 into a temporary TUTOR_ROOT (no Docker).

The files are asserted as written, then run: the init task and the hub service's command with
their rendered environment (only Redis's address and the data directory changed to this machine's),
and Tutor's Caddy release with the rendered Caddyfile in front of the hub (only its global options
and the hub's address changed), carrying a token request and a WebSocket stream.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from auth.keys import load_private_key
from hub.dev.embedded import free_port
from hub.dev.simulator import SimulatedLMS
from rthub_lms import RealtimeBackend
from tests import ROOT, SEND_TIMEOUT
from tests.deploy.tutor import TutorProject, compose, serve, tutor_venv, wait_for
from tests.servers import RedisServer
from tests.wsclient import collect

# The first run builds Tutor's virtualenv; one worker renders the module's project, first.
pytestmark = [pytest.mark.timeout(900), pytest.mark.deploy, pytest.mark.slow]

HOST = "realtime.local.openedx.io"
CONTAINER_DATA = "/var/lib/rthub"


@pytest.fixture(scope="module")
def tutor_bin() -> Path:
    return tutor_venv()


@pytest.fixture(scope="module")
def project(tutor_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> TutorProject:
    project = TutorProject(tutor_bin, tmp_path_factory.mktemp("tutor-root"))
    project.save()
    return project


def _rthub_block(text: str) -> str:
    """The lines the rthub patch added to an LMS settings module (from its comment to the next blank line)."""
    start = text.index("# rthub:")
    end = text.index("\n\n", start)
    return text[start:end]


def test_compose_service_runs_the_hub_on_tutors_redis_under_its_own_prefix(project: TutorProject) -> None:
    services = compose(project)
    hub = services["rthub"]
    assert hub["image"] == "docker.io/rthub/rthub:0.1.0"
    assert hub["command"] == ["rthub", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
    assert hub["environment"] == {
        "RTHUB_REDIS_URL": "redis://redis:6379/0",
        "RTHUB_REDIS_PREFIX": "rthub:",
        "RTHUB_LMS_ROOT_URL": "http://local.openedx.io",
        "RTHUB_ISSUER": f"http://{HOST}",
        "RTHUB_DATA_DIR": CONTAINER_DATA,
        "RTHUB_STREAM_MAXLEN": "100000",
        "RTHUB_WEBHOOK_ALLOW_PRIVATE": "false",
        "RTHUB_WEBHOOK_PRIVATE_HOSTS": "",
        "FORWARDED_ALLOW_IPS": "*",
        "AUTHLIB_INSECURE_TRANSPORT": "true",
    }
    assert hub["volumes"] == [f"../../data/rthub:{CONTAINER_DATA}"]
    assert hub["depends_on"] == ["redis"] and "redis" in services
    assert hub["restart"] == "unless-stopped"
    assert hub["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8000/readyz" in hub["healthcheck"]["test"][3]
    job = compose(project, "docker-compose.jobs.yml")["rthub-job"]
    assert job["image"] == hub["image"] and job["environment"] == hub["environment"]
    assert job["volumes"] == hub["volumes"]


def test_key_files_live_in_tutors_data_directory_shared_by_the_hub_and_its_jobs(project: TutorProject) -> None:
    """No key in the rendered compose files: the hub makes its keys on the first start into `data/rthub`,
    which the job container (init, `tutor local run rthub rthub …`) mounts too, and where a rotation can
    write. (The keys config.yml holds are the Kubernetes Secret's, tests/deploy/test_tutor_k8s.py.)"""
    hub, job = compose(project)["rthub"], compose(project, "docker-compose.jobs.yml")["rthub-job"]
    for service in (hub, job):
        (volume,) = service["volumes"]
        source, target = volume.split(":")
        assert (project.root / "env" / "local" / source).resolve() == (project.root / "data" / "rthub").resolve()
        assert target == service["environment"]["RTHUB_DATA_DIR"] == CONTAINER_DATA
    for name in ("docker-compose.yml", "docker-compose.jobs.yml"):
        assert "PRIVATE KEY" not in project.read("local", name)
        assert project.printvalue("RTHUB_ENDPOINT_KEY") not in project.read("local", name)


def test_local_launch_builds_the_hub_and_the_openedx_image(project: TutorProject) -> None:
    """Tutor 22's `local launch` builds what IMAGES_BUILD_REQUIRED names (none of its own): both images
    rthub needs; `dev launch` builds openedx-dev itself, and the hub image here."""
    assert project.images_to_build("local") == ["rthub", "openedx"]
    assert {"openedx-dev", "rthub"} <= set(project.images_to_build("dev"))


def test_lms_settings_add_the_backend_to_event_tracking_backends(project: TutorProject) -> None:
    for module in ("production.py", "development.py"):
        text = project.read("apps", "openedx", "settings", "lms", module)
        block = _rthub_block(text)
        assert text.index(block) < text.index("######## End of common LMS settings")
        tracking_logs = {"ENGINE": "eventtracking.backends.routing.RoutingBackend", "OPTIONS": {}}
        namespace: dict[str, Any] = {"EVENT_TRACKING_BACKENDS": {"tracking_logs": tracking_logs}}
        exec(block, namespace)
        assert namespace["EVENT_TRACKING_BACKENDS"] == {
            "tracking_logs": tracking_logs,
            "rthub": {
                "ENGINE": "rthub_lms.RealtimeBackend",
                "OPTIONS": {"redis_url": "redis://redis:6379/0", "redis_prefix": "rthub:", "stream_maxlen": 100000},
            },
        }
        configured = namespace["EVENT_TRACKING_BACKENDS"]["rthub"]
        module, name = configured["ENGINE"].rsplit(".", 1)
        backend = getattr(importlib.import_module(module), name)(**configured["OPTIONS"])
        assert (backend.settings.redis_prefix, backend.settings.stream_maxlen) == ("rthub:", 100000)
    assert "rthub" not in project.read("apps", "openedx", "settings", "cms", "production.py")
    dockerfile = project.read("build", "openedx", "Dockerfile")
    assert "$PIP_COMMAND install --find-links /tmp/rthub-wheels 'rthub-lms==0.1.0'" in dockerfile
    assert dockerfile.index("rthub-lms") < dockerfile.index("FROM python AS nodejs-requirements")


def test_settings_follow_tutors_redis_https_and_overrides(tutor_bin: Path, tmp_path: Path) -> None:
    project = TutorProject(tutor_bin, tmp_path / "root")
    project.save(  # `--set` values are YAML: a prefix ending in ":" is quoted, as a Tutor user would
        "REDIS_USERNAME=hub", "REDIS_PASSWORD=s3cret", "REDIS_HOST=redis.internal", "ENABLE_HTTPS=true",
        'RTHUB_REDIS_PREFIX="realtime:"', "RTHUB_WORKERS=3",
        "RTHUB_LMS_PIP_REQUIREMENT=rthub-lms @ file:///wheels/x.whl",
    )
    hub = compose(project)["rthub"]
    assert hub["environment"]["RTHUB_REDIS_URL"] == "redis://hub:s3cret@redis.internal:6379/0"
    assert hub["environment"]["RTHUB_REDIS_PREFIX"] == "realtime:"
    assert hub["environment"]["RTHUB_ISSUER"] == f"https://{HOST}"
    assert hub["environment"]["RTHUB_LMS_ROOT_URL"] == "https://local.openedx.io"
    assert "AUTHLIB_INSECURE_TRANSPORT" not in hub["environment"], "with HTTPS, OAuth must refuse plain http"
    assert hub["command"][-2:] == ["--workers", "3"]
    settings = _rthub_block(project.read("apps", "openedx", "settings", "lms", "production.py"))
    assert '"redis_url": "redis://hub:s3cret@redis.internal:6379/0"' in settings
    assert '"redis_prefix": "realtime:"' in settings
    assert "/tmp/rthub-wheels 'rthub-lms @ file:///wheels/x.whl'" in project.read("build", "openedx", "Dockerfile")


def test_caddy_site_for_the_hub_loads_in_tutors_caddy(project: TutorProject) -> None:
    result = subprocess.run(
        [project.bin_dir / "caddy", "adapt", "--adapter", "caddyfile",
         "--config", project.root / "env" / "apps" / "caddy" / "Caddyfile"],
        capture_output=True, text=True, env={**os.environ, "default_site_port": ":80"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    routes = json.loads(result.stdout)["apps"]["http"]["servers"]["srv0"]["routes"]
    (site,) = [route for route in routes if route["match"] == [{"host": [HOST]}]]
    handlers = [handler for route in site["handle"][0]["routes"] for handler in route["handle"]]
    proxies = [handler for handler in handlers if handler["handler"] == "reverse_proxy"]
    assert [proxy["upstreams"] for proxy in proxies] == [[{"dial": "rthub:8000"}]] * 2
    websocket_route = next(r for r in site["handle"][0]["routes"] if r.get("match"))
    assert websocket_route["match"] == [{"header": {"Connection": ["*Upgrade*"], "Upgrade": ["websocket"]}}]
    assert websocket_route["handle"][0]["stream_close_delay"] == 300 * 10**9


@pytest.fixture
def rendered_hub(project: TutorProject, own_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with serve(project, own_redis.url, tmp_path / "hub.log") as served:
        yield served


@pytest.fixture
def caddy(project: TutorProject, rendered_hub: tuple[int, dict[str, str]], tmp_path: Path) -> Iterator[int]:
    """Tutor's Caddy release on the rendered Caddyfile, listening on a free port; yields the port.

    Changed for this machine: global options (plain HTTP on that port, no admin endpoint) and the
    hub's address; every site block is as rendered.
    """
    hub_port, _ = rendered_hub
    port = free_port()
    text = project.read("apps", "caddy", "Caddyfile")
    assert text.count("rthub:8000") == 2
    text = text.replace("rthub:8000", f"127.0.0.1:{hub_port}")
    text = text.replace("\n{\n", f"\n{{\n    admin off\n    auto_https off\n    http_port {port}\n", 1)
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    env = {**os.environ, "default_site_port": f":{port}", "XDG_DATA_HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path)}
    with open(tmp_path / "caddy.log", "wb") as log:
        process = subprocess.Popen(
            [project.bin_dir / "caddy", "run", "--adapter", "caddyfile", "--config", caddyfile],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process, headers={"Host": HOST})
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_compose_healthcheck_is_healthy_while_the_hub_reaches_redis(
    project: TutorProject, rendered_hub: tuple[int, dict[str, str]], own_redis: RedisServer
) -> None:
    """The rendered healthcheck, run as Docker runs it (with the image's Python: here ours) against the
    rendered hub: healthy, then unhealthy once Redis is gone (Docker then reports the service unhealthy)."""
    port, env = rendered_hub
    test = compose(project)["rthub"]["healthcheck"]["test"]
    command = [sys.executable, *[arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in test[2:]]]
    assert subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0
    own_redis.stop(kill=True)
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    assert failed.returncode != 0 and "503" in failed.stderr


def test_wheels_in_the_build_contexts_satisfy_both_images_requirements(project: TutorProject, tmp_path: Path) -> None:
    """rthub and rthub-lms are not on the package index yet: `pip wheel --no-deps` of each, into the
    directories the README names, is what the rendered Dockerfiles install from (`--find-links`); here
    with the index off, so the wheels alone must satisfy the rendered requirements."""
    hub_wheels = project.root / "env" / "plugins" / "rthub" / "build" / "rthub" / "wheels"
    lms_wheels = project.root / "env" / "build" / "openedx" / "rthub-wheels"
    for target, sources in ((hub_wheels, (ROOT, ROOT / "lms")), (lms_wheels, (ROOT / "lms",))):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "-w", target, *sources], check=True, capture_output=True, timeout=300)
    assert sorted(path.name for path in hub_wheels.glob("*.whl")) == [
        "rthub-0.1.0-py3-none-any.whl", "rthub_lms-0.1.0-py3-none-any.whl"]
    hub_dockerfile = project.read("plugins", "rthub", "build", "rthub", "Dockerfile")
    assert "--mount=type=bind,source=wheels,target=/tmp/wheels" in hub_dockerfile
    assert "--find-links /tmp/wheels 'rthub==0.1.0'" in hub_dockerfile
    lms_dockerfile = project.read("build", "openedx", "Dockerfile")
    assert "--mount=type=bind,source=rthub-wheels,target=/tmp/rthub-wheels" in lms_dockerfile
    for wheels, requirement in ((hub_wheels, "rthub==0.1.0"), (lms_wheels, "rthub-lms==0.1.0")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links", wheels,
                        "--target", tmp_path / requirement, requirement], check=True, capture_output=True, timeout=300)
    hub = tmp_path / "rthub==0.1.0"
    hub_files = {path.relative_to(hub).as_posix() for path in hub.rglob("*")}
    assert {"hub/cli.py", "hub/admin/templates/base.html", "auth/keys.py"} <= hub_files
    (entry_points,) = hub.glob("rthub-0.1.0.dist-info/entry_points.txt")
    assert "rthub = hub.cli:main" in entry_points.read_text()
    assert (tmp_path / "rthub-lms==0.1.0" / "rthub_lms" / "backend.py").exists()


def _init(project: TutorProject, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The rendered init task, as `tutor local do init` runs it in the job container (`sh -e -c`)."""
    script = project.init_task("rthub")
    assert "rthub admin bootstrap" in script
    return subprocess.run(["sh", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def _token(port: int, client_id: str, secret: str, scope: str) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/oauth/token", headers={"Host": HOST}, auth=(client_id, secret),
        data={"grant_type": "client_credentials", "scope": scope}, timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def test_rendered_deployment_serves_tokens_and_streams_through_caddy(
    project: TutorProject, rendered_hub: tuple[int, dict[str, str]], caddy: int
) -> None:
    _, env = rendered_hub
    first = _init(project, env)
    assert first.returncode == 0, first.stderr
    credentials = dict(line.split(": ", 1) for line in first.stdout.splitlines() if line.startswith("client_"))
    again = _init(project, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "rthub: admin client tutor-admin already exists"
    listed = json.loads(subprocess.run(["rthub", "clients", "list", "--json"], env=env, capture_output=True,
                                       text=True, check=True).stdout)["clients"]
    assert [(c["client_id"], c["scopes"]) for c in listed] == [(credentials["client_id"], ["admin"])]

    admin_token = _token(caddy, credentials["client_id"], credentials["client_secret"], "admin")
    assert _jwt_header(admin_token)["kid"] == load_private_key(Path(env["RTHUB_DATA_DIR"]) / "signing-key.pem").kid
    assert httpx.get(f"http://127.0.0.1:{caddy}/admin/api/clients", headers={
        "Host": HOST, "Authorization": f"Bearer {admin_token}"}, timeout=10).status_code == 200

    created = subprocess.run(
        ["rthub", "clients", "create", "--name", "LRS", "--type", "enterprise", "--translator", "xapi",
         "--grant", "{}", "--json"], env=env, capture_output=True, text=True, check=True,
    )
    consumer = json.loads(created.stdout)
    token = _token(caddy, consumer["client_id"], consumer["client_secret"], "events:read")
    frames = asyncio.run(_stream_through_caddy(caddy, token, env))
    assert [frame["type"] for frame in frames] == ["welcome", "event"]
    assert frames[0]["client_id"] == consumer["client_id"]
    assert frames[1]["data"]["actor"]["account"]["homePage"] == "http://local.openedx.io"


async def _stream_through_caddy(port: int, token: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Open the stream via Caddy's site for the hub, publish one LMS event on the rendered prefix, read it."""
    async with websockets.connect(
        f"ws://{HOST}:{port}/v1/events", host="127.0.0.1", port=port,
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(orjson.dumps({"type": "subscribe"}).decode())
        backend = RealtimeBackend(
            redis_url=env["RTHUB_REDIS_URL"], redis_prefix=env["RTHUB_REDIS_PREFIX"], timeout=SEND_TIMEOUT,
        )
        try:
            lms = SimulatedLMS(seed=7)
            deadline = time.monotonic() + 10
            while not backend.send(lms.next_event()) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the preemptive filter learns of the new client within moments
            return [welcome, *await collect(ws, 1)]
        finally:
            backend.close()


def test_with_https_the_hub_issues_tokens_behind_caddys_tls_without_insecure_transport(
    tutor_bin: Path, own_redis: RedisServer, tmp_path: Path
) -> None:
    project = TutorProject(tutor_bin, tmp_path / "root")
    project.save("ENABLE_HTTPS=true")
    with serve(project, own_redis.url, tmp_path / "hub.log") as (port, env):
        assert "AUTHLIB_INSECURE_TRANSPORT" not in env and env["RTHUB_ISSUER"] == f"https://{HOST}"
        created = subprocess.run(
            ["rthub", "clients", "create", "--name", "LRS", "--type", "enterprise", "--translator", "xapi", "--json"],
            env=env, capture_output=True, text=True, check=True,
        )
        consumer = json.loads(created.stdout)
        token = _token(port, consumer["client_id"], consumer["client_secret"], "events:read")
        assert _jwt_header(token)["kid"] == load_private_key(Path(env["RTHUB_DATA_DIR"]) / "signing-key.pem").kid
