"""examples/adaptive_engine.py (built on the SDK) against a real hub: prints events, keeps its cursor
file across a restart of the program, and stops with status 1 when the client is revoked."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.client.helpers import Load, revoke_client
from tests.hubproc import ROOT, Hub
from tests.servers import RedisServer


def _interruptible() -> None:
    """Ctrl-C as a terminal sends it: a shell starts background jobs with SIGINT ignored, and the
    example, started from a test run in the background, would inherit that and never see our SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Engine:
    """The example as a subprocess, its stdout lines readable with a timeout."""

    def __init__(self, hub: Hub, client_id: str, secret: str, cursor_file: Path) -> None:
        env = {**os.environ, "RTHUB_CLIENT_ID": client_id, "RTHUB_CLIENT_SECRET": secret}
        self.process = subprocess.Popen(
            [sys.executable, "examples/adaptive_engine.py", "--url", hub.http, "--cursor-file", str(cursor_file)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=_interruptible,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def cursors(self, count: int) -> list[str]:
        return [self.lines.get(timeout=15).split()[0] for _ in range(count)]

    def exit_status(self, timeout: float) -> int:
        """The program's exit status; past `timeout` it is killed and the test fails with its stderr."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            message = f"the example did not exit within {timeout} s; its stderr:\n{stderr[-3000:]}"
            raise AssertionError(message) from None


def test_example_engine_resumes_from_its_cursor_file_and_stops_when_revoked(
    hub: Hub, redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    client_id, secret = hub.client()
    cursor_file = tmp_path / "engine.cursor"
    with Load(redis_server.url, prefix, seed=99) as load:
        (start,) = load.send(1)
        cursor_file.write_text(start)
        first = Engine(hub, client_id, secret, cursor_file)
        try:
            before = load.send(5)
            assert first.cursors(5) == before
        finally:
            first.process.send_signal(signal.SIGINT)
            assert first.exit_status(10) == 0
        assert cursor_file.read_text() == before[-1]
        while_down = load.send(5)
        second = Engine(hub, client_id, secret, cursor_file)
        try:
            assert second.cursors(5) == while_down, "exactly what was published while it was down"
            revoke_client(hub, client_id)
            assert second.exit_status(15) == 1
        finally:
            if second.process.poll() is None:
                second.process.kill()
    assert second.process.stderr is not None
    stderr = second.process.stderr.read()
    assert "stopped: hub closed the stream with 4403" in stderr, stderr


def test_example_engine_prints_only_the_events_it_receives(
    hub: Hub, redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """One line per event on stdout and nothing else anywhere: no token requests, no connection chatter."""
    client_id, secret = hub.client()
    cursor_file = tmp_path / "engine.cursor"
    with Load(redis_server.url, prefix, seed=7) as load:
        (start,) = load.send(1)
        cursor_file.write_text(start)
        engine = Engine(hub, client_id, secret, cursor_file)
        try:
            sent = load.send(4)
            assert engine.cursors(4) == sent
        finally:
            engine.process.send_signal(signal.SIGINT)
            assert engine.exit_status(10) == 0
    engine.reader.join(10)
    assert engine.lines.empty(), "nothing on stdout but the four events"
    assert engine.process.stderr is not None
    assert engine.process.stderr.read() == ""
