"""The render stage's process: started beside `rthub serve`'s workers, restarted if it dies.

    python -m hub.render_stage SOCKET [--log-format json|text] [--log-level L]
                                             # started by `rthub serve --workers N`; settings from RTHUB_*

The stage itself (`hub.fanout.stage`) is fan-out; this process composes it with Redis and the
registry's change notices (`hub.control.changes`), which is why it lives at the app layer.
The stage listens on a Unix socket in a private directory (mode 0700); its path reaches the workers
as `RTHUB_RENDER_STAGE_SOCKET`, set before they are spawned. A watchdog thread restarts a stage that
exits (its workers follow the live feed themselves until it is back). Linux SIGTERMs the stage if
`rthub serve` itself dies, however it dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.config
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

from hub.config import Settings
from hub.control.changes import ChangeFollower
from hub.fanout.stage.server import RenderStage
from hub.lifetime import die_with_parent
from hub.logs import RedactingFilter, uvicorn_log_config
from hub.redis import connect
from rthub_lms.connect import discover

log = logging.getLogger("rthub.stage")

RELOAD_EVERY = 60.0  # the stage's interest is also read afresh this often, whatever the notices said
ENV = "RTHUB_RENDER_STAGE_SOCKET"
WATCH_EVERY = 0.5
STOP_TIMEOUT = 10.0
SHUTDOWN_GRACE = 3.0  # the stage's own bound on stopping in order, well within STOP_TIMEOUT


def _start(path: str, log_format: str, log_level: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "hub.render_stage", path, "--log-format", log_format, "--log-level", log_level]
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


async def serve(path: str, settings: Settings) -> None:
    topology = discover(settings.redis_url)
    client = connect(topology, max_connections=16, timeout=5.0, health_check_interval=10)
    stage = RenderStage(client, settings, topology.sharded)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(stage.accept, path)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop_or_exit, stop)
    changes = ChangeFollower(client, settings)
    changes.register(lambda client_id: stage.reload_interest(), stage.reload_interest, resync_every=RELOAD_EVERY)
    tasks = [asyncio.create_task(stage.run()), changes.start()]
    stopping = asyncio.create_task(stop.wait())
    failed = False
    try:
        # A task that ends on its own ends the process: the workers then follow the live feed
        # themselves and the watchdog starts a fresh stage, instead of workers waiting on a silent one.
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopping}:
            log.error("render stage task ended: %r; exiting", task.exception() or "returned")
            failed = True
    finally:
        stopping.cancel()
        server.close()
        for writer in list(stage.workers):
            writer.close()
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):  # a Redis that does not answer must not keep it alive
                await changes.close()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await client.aclose()
        except TimeoutError:
            log.warning("render stage: shutdown took over %gs; exiting anyway", SHUTDOWN_GRACE)
            failed = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if failed:
        raise SystemExit(1)


def _stop_or_exit(stop: asyncio.Event) -> None:
    """The first SIGTERM/SIGINT stops the stage in order; a second one ends it at once."""
    if stop.is_set():
        os._exit(1)
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description="rthub's shared render stage (started by rthub serve)")
    parser.add_argument("socket")
    parser.add_argument("--log-format", choices=("json", "text"), default="json")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.log_format == "json":  # the same JSON lines as `rthub serve`, credentials redacted
        logging.config.dictConfig(uvicorn_log_config(args.log_level))
    else:
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
    asyncio.run(serve(args.socket, Settings.from_env()))


if __name__ == "__main__":
    main()
