"""Processes of one deployment as an operator starts them: settings at their defaults, key files in the
data directory that HOME implies, each process in a working directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.hubproc import ROOT


def home_env(home: Path) -> dict[str, str]:
    """The environment that puts the default data directory under `home` (no XDG_DATA_HOME)."""
    return {"HOME": str(home), "XDG_DATA_HOME": ""}


def data_dir(home: Path) -> Path:
    """The default data directory for `home_env(home)`."""
    return home / ".local" / "share" / "rthub"


def command_env(redis_url: str, prefix: str, home: Path) -> dict[str, str]:
    """An `rthub` command's environment: this Redis and prefix, key files under `home`, this tree's code."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "lms"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "RTHUB_REDIS_URL": redis_url, "RTHUB_REDIS_PREFIX": prefix, **home_env(home),
            "PYTHONPATH": path}


def rthub(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`rthub ARGS` run in `cwd` (made if absent)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
