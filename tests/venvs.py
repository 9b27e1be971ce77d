"""Virtualenvs of real peers whose pins clash with ours (Tutor, Ralph, the reference translator).

Each is built once per machine, keyed on its pins, outside the work tree (so nothing a peer package
ships, the reference translator's own fixtures say, ever sits among the project's files), under a
file lock so that parallel test workers and concurrent runs share one build. `RTHUB_TEST_VENVS` moves
them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

VENVS = Path(os.environ.get("RTHUB_TEST_VENVS", Path.home() / ".cache" / "rthub-test-venvs"))
MARKER = "rthub-pins.txt"


class PeerVenvError(RuntimeError):
    """A peer's virtualenv could not be built; the message names the step and its output."""


def clean_environ() -> dict[str, str]:
    """Our environment without what would point a peer's interpreter at our packages."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


def peer_venv(name: str, pins: Sequence[str]) -> Path:
    """The bin directory of `VENVS/name`, holding exactly `pins`: built when missing or built with other
    pins, reused otherwise. Safe to call from many processes at once."""
    venv = VENVS / name
    bin_dir = venv / "bin"
    wanted = "\n".join(pins)
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / MARKER
        if (bin_dir / "python").exists() and marker.exists() and marker.read_text() == wanted:
            return bin_dir
        shutil.rmtree(venv, ignore_errors=True)
        for step in ([sys.executable, "-m", "venv", str(venv)], [str(bin_dir / "pip"), "install", "-q", *pins]):
            done = subprocess.run(step, capture_output=True, text=True, env=clean_environ(), timeout=900, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
                raise PeerVenvError(f"building {venv} failed at `{' '.join(step)}`:\n{tail}")
        marker.write_text(wanted)
    return bin_dir
