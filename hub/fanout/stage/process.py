"""Run the render stage beside `rthub serve`'s workers, restarting it if it dies.

The stage listens on a Unix socket in a private directory (mode 0700); its path reaches the workers
as `RTHUB_RENDER_STAGE_SOCKET`, set before they are spawned. A watchdog thread restarts a stage that
exits (its workers follow the live feed themselves until it is back). Linux SIGTERMs the stage if
`rthub serve` itself dies, however it dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

from hub.lifetime import die_with_parent

log = logging.getLogger("rthub.fanout.stage")

ENV = "RTHUB_RENDER_STAGE_SOCKET"
WATCH_EVERY = 0.5
STOP_TIMEOUT = 10.0


def _start(path: str, log_format: str, log_level: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "hub.fanout.stage.server", path, "--log-format", log_format, "--log-level", log_level]
    return subprocess.Popen(argv, preexec_fn=die_with_parent, start_new_session=True)


@contextlib.contextmanager
def render_stage(log_format: str = "json", log_level: str = "warning") -> Iterator[str]:
    """A running render stage for the duration of the block, logging like `rthub serve`; yields its socket path."""
    directory = tempfile.mkdtemp(prefix="rthub-stage-")
    path = os.path.join(directory, "stage.sock")
    os.environ[ENV] = path
    stopping = threading.Event()
    process = _start(path, log_format, log_level)

    def watch() -> None:
        nonlocal process
        while not stopping.wait(WATCH_EVERY):
            if process.poll() is not None:
                log.warning("render stage exited with %s; restarting it", process.returncode)
                process = _start(path, log_format, log_level)

    watchdog = threading.Thread(target=watch, name="rthub-stage-watchdog", daemon=True)
    watchdog.start()
    try:
        yield path
    finally:
        stopping.set()
        watchdog.join()
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.environ.pop(ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
