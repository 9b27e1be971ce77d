"""The Tutor plugin under `tutor k8s`, rendered by the real Tutor (no cluster): every object the
plugin adds is valid for Kubernetes 1.30 (kubernetes-validate, strict), and what the objects say is
run here: the Deployment's command with its environment and the Secret's keys (a read-only
directory, as the Secret's mount), its probes' paths, the Job's init task.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet

from auth.keys import load_private_key
from hub.dev.embedded import free_port
from tests.deploy.tutor import VENV_BIN, TutorProject, tutor_venv
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(900), pytest.mark.deploy, pytest.mark.slow]

KUBERNETES = "1.30.0"
RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
K8S_FILES = ("k8s/namespace.yml", "k8s/deployments.yml", "k8s/services.yml", "k8s/jobs.yml", "k8s/volumes.yml")


@pytest.fixture(scope="module")
def tutor_bin() -> Path:
    return tutor_venv()


@pytest.fixture(scope="module")
def project(tutor_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> TutorProject:
    project = TutorProject(tutor_bin, tmp_path_factory.mktemp("tutor-k8s"))
    project.save("RTHUB_REPLICAS=3", f"RTHUB_RESOURCES={json.dumps(RESOURCES)}", "RTHUB_WORKERS=2")
    return project


def _objects(project: TutorProject, path: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects of one rendered file, by (kind, name)."""
    documents = yaml.safe_load_all((project.root / "env" / path).read_text())
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents if doc}


def _kustomization_files(project: TutorProject) -> list[str]:
    """The resource files the rendered kustomization.yml lists, every one Tutor's or a plugin's."""
    return yaml.safe_load(project.read("kustomization.yml"))["resources"]


@pytest.mark.parametrize("plugins", [("rthub",), ("rthub", "aspects")], ids=["rthub", "with-aspects"])
def test_every_rendered_object_is_valid_for_kubernetes_1_30(
    tutor_bin: Path, tmp_path: Path, plugins: tuple[str, ...]
) -> None:
    project = TutorProject(tutor_bin, tmp_path / "root")
    project.save("RUN_RALPH=true", "ASPECTS_XAPI_SOURCE=ralph", "RTHUB_REPLICAS=2", plugins=plugins)
    files = _kustomization_files(project)
    assert set(K8S_FILES) | {"plugins/rthub/k8s/keys.yml"} <= set(files)
    result = subprocess.run(
        [tutor_bin / "kubernetes-validate", "--kubernetes-version", KUBERNETES, "--strict", *files],
        cwd=project.root / "env", capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = set(re.findall(r"passed for resource (\S+) against version 1\.30", result.stdout + result.stderr))
    assert {"deployment/rthub", "service/rthub", "job/rthub-job", "secret/rthub-keys"} <= passed
    if "aspects" in plugins:
        assert "deployment/ralph" in passed  # Aspects' objects are validated alongside


def test_validation_fails_on_an_invalid_object(project: TutorProject, tutor_bin: Path, tmp_path: Path) -> None:
    """kubernetes-validate can fail: the rendered Deployment with a port that is no number is refused."""
    broken = tmp_path / "deployments.yml"
    broken.write_text(project.read("k8s", "deployments.yml").replace("containerPort: 8000", 'containerPort: "http"'))
    result = subprocess.run(
        [tutor_bin / "kubernetes-validate", "--kubernetes-version", KUBERNETES, "--strict", "--quiet", broken],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "deployment/rthub" in result.stdout + result.stderr


def test_deployment_has_probes_replicas_resources_and_the_keys_secret(project: TutorProject) -> None:
    deployment = _objects(project, "k8s/deployments.yml")[("Deployment", "rthub")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    assert container["image"] == "docker.io/rthub/rthub:0.1.0"
    assert container["command"] == ["rthub", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"] == RESOURCES
    env = {item["name"]: item["value"] for item in container["env"]}
    compose = yaml.safe_load(project.read("local", "docker-compose.yml"))["services"]["rthub"]["environment"]
    assert env == compose, "one list of variables for both deployments"
    (mount,) = container["volumeMounts"]
    assert mount == {"name": "keys", "mountPath": env["RTHUB_DATA_DIR"], "readOnly": True}
    assert pod["volumes"] == [{"name": "keys", "secret": {"secretName": "rthub-keys", "defaultMode": 0o400}}]


def test_service_carries_caddys_upstream_to_the_deployment(project: TutorProject) -> None:
    """Caddy runs in k8s too, on the same Caddyfile: every `reverse_proxy` of the hub's site dials a
    Service that exists and selects the hub's pods on their port."""
    result = subprocess.run(
        [project.bin_dir / "caddy", "adapt", "--adapter", "caddyfile",
         "--config", project.root / "env" / "apps" / "caddy" / "Caddyfile"],
        capture_output=True, text=True, env={**os.environ, "default_site_port": ":80"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    host = project.printvalue("RTHUB_HOST")
    routes = json.loads(result.stdout)["apps"]["http"]["servers"]["srv0"]["routes"]
    (site,) = [route for route in routes if route["match"] == [{"host": [host]}]]
    dials = {upstream["dial"] for handler in _handlers(site) if handler["handler"] == "reverse_proxy"
             for upstream in handler["upstreams"]}
    assert dials == {"rthub:8000"}
    services = _objects(project, "k8s/services.yml")
    service = services[("Service", "rthub")]
    assert service["spec"]["ports"] == [{"port": 8000, "targetPort": "http", "protocol": "TCP"}]
    deployment = _objects(project, "k8s/deployments.yml")[("Deployment", "rthub")]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]


def _handlers(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for handler in route.get("handle", []):
        yield handler
        for inner in handler.get("routes", []):
            yield from _handlers(inner)


def test_keys_are_generated_once_into_the_config_and_carried_by_the_secret(
    project: TutorProject, tutor_bin: Path, tmp_path: Path
) -> None:
    signing, endpoint = project.printvalue("RTHUB_SIGNING_KEY"), project.printvalue("RTHUB_ENDPOINT_KEY")
    secret = _objects(project, "plugins/rthub/k8s/keys.yml")[("Secret", "rthub-keys")]
    assert secret["stringData"] == {"signing-key.pem": signing + "\n", "endpoint.key": endpoint}
    Fernet(endpoint.encode())  # a valid endpoint key
    key_file = tmp_path / "signing-key.pem"
    key_file.write_text(secret["stringData"]["signing-key.pem"])
    assert load_private_key(key_file).as_dict()["crv"] == "P-256"
    project.tutor("config", "save")
    assert (project.printvalue("RTHUB_SIGNING_KEY"), project.printvalue("RTHUB_ENDPOINT_KEY")) == (signing, endpoint)
    other = TutorProject(tutor_bin, tmp_path / "other")
    other.save()
    assert other.printvalue("RTHUB_SIGNING_KEY") != signing and other.printvalue("RTHUB_ENDPOINT_KEY") != endpoint


def test_init_job_runs_the_hubs_image_environment_and_keys(project: TutorProject) -> None:
    """`tutor k8s do init` runs the task in the Job named rthub-job (Tutor sets its args to the script)."""
    job = _objects(project, "k8s/jobs.yml")[("Job", "rthub-job")]
    deployment = _objects(project, "k8s/deployments.yml")[("Deployment", "rthub")]
    job_pod, hub_pod = job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    (job_container,), (hub_container,) = job_pod["containers"], hub_pod["containers"]
    assert job_pod["restartPolicy"] == "Never"
    assert "command" not in job_container, "Tutor runs the script as the container's args"
    for field in ("image", "env", "volumeMounts"):
        assert job_container[field] == hub_container[field]
    assert job_pod["volumes"] == hub_pod["volumes"]


def _secret_directory(project: TutorProject, directory: Path) -> Path:
    """The Secret's files as its mount presents them: one file per key, mode 0400, a read-only directory."""
    secret = _objects(project, "plugins/rthub/k8s/keys.yml")[("Secret", "rthub-keys")]
    directory.mkdir()
    for name, value in secret["stringData"].items():
        (directory / name).write_text(value)
        (directory / name).chmod(0o400)
    directory.chmod(0o500)
    return directory


def _container_env(container: dict[str, Any], redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["RTHUB_REDIS_URL"] == "redis://redis:6379/0"
    env.update(RTHUB_REDIS_URL=redis_url, RTHUB_DATA_DIR=str(data_dir))
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **env}


def _probe(port: int, probe: dict[str, Any]) -> int:
    try:
        url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
        return httpx.get(url, timeout=probe["timeoutSeconds"]).status_code
    except httpx.HTTPError:
        return 0


def test_deployment_and_job_run_with_the_secrets_keys_and_answer_the_probes(
    project: TutorProject, own_redis: RedisServer, tmp_path: Path
) -> None:
    """The Deployment's command and environment, with the Secret's keys in a read-only directory: it
    becomes ready, the init Job's task issues the admin client, tokens are signed with the Secret's key;
    with Redis gone the readiness probe fails and the liveness probe does not (no restart for it)."""
    keys = _secret_directory(project, tmp_path / "keys")
    deployment = _objects(project, "k8s/deployments.yml")[("Deployment", "rthub")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, own_redis.url, keys)
    command = list(container["command"])
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    with open(tmp_path / "hub.log", "wb") as log:
        hub = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: hub.poll() is not None or _probe(port, readiness) == 200, 30, "the hub never became ready")
        assert hub.poll() is None, (tmp_path / "hub.log").read_text()
        assert _probe(port, liveness) == 200

        job = _objects(project, "k8s/jobs.yml")[("Job", "rthub-job")]
        (job_container,) = job["spec"]["template"]["spec"]["containers"]
        script = project.init_task("rthub")
        init = subprocess.run(["sh", "-e", "-c", script], env=_container_env(job_container, own_redis.url, keys),
                              capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stderr
        credentials = dict(line.split(": ", 1) for line in init.stdout.splitlines() if line.startswith("client_"))
        token = httpx.post(
            f"http://127.0.0.1:{port}/oauth/token", auth=(credentials["client_id"], credentials["client_secret"]),
            data={"grant_type": "client_credentials", "scope": "admin"}, timeout=10,
        )
        assert token.status_code == 200, token.text
        head = token.json()["access_token"].split(".")[0]
        kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
        assert kid == load_private_key(keys / "signing-key.pem").kid
        assert sorted(path.name for path in keys.iterdir()) == ["endpoint.key", "signing-key.pem"], "nothing written"

        own_redis.stop(kill=True)
        wait_until(lambda: _probe(port, readiness) == 503, 30, "readiness did not fail without Redis")
        assert _probe(port, liveness) == 200
    finally:
        hub.terminate()
        hub.wait(timeout=15)
        keys.chmod(0o700)
