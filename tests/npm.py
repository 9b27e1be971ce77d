"""npm packages of real peers (the AsyncAPI project's parser), installed as `tests/venvs.py` builds
Python peers: once per machine, keyed on the pins, outside the work tree, under a file lock shared by
parallel workers. `RTHUB_TEST_NPM` moves them. Needs `node` and `npm` on PATH.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

NPM = Path(os.environ.get("RTHUB_TEST_NPM", Path.home() / ".cache" / "rthub-test-npm"))
MARKER = "rthub-pins.txt"


class PeerPackageError(RuntimeError):
    """The packages could not be installed; the message names the step and its output."""


def npm_packages(name: str, pins: Sequence[str]) -> Path:
    """The `node_modules` directory of `NPM/name`, holding exactly `pins` (`package@version`): installed
    when missing or installed with other pins, reused otherwise. Safe to call from many processes at once."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PeerPackageError("node and npm must be on PATH")
    root = NPM / name
    wanted = "\n".join(pins)
    NPM.mkdir(parents=True, exist_ok=True)
    with open(NPM / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = root / MARKER
        if (root / "node_modules").is_dir() and marker.exists() and marker.read_text() == wanted:
            return root / "node_modules"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "package.json").write_text(json.dumps({"name": f"rthub-test-{name}", "private": True}))
        step = [npm, "install", "--no-audit", "--no-fund", "--save-exact", *pins]
        done = subprocess.run(step, cwd=root, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise PeerPackageError(f"installing into {root} failed at `{' '.join(step)}`:\n{tail}")
        marker.write_text(wanted)
    return root / "node_modules"
