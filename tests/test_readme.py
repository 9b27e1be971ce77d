"""The README's walkthrough ("Consumers in five commands"), run as a reader runs it.

The commands are read from the README's fenced blocks marked `<!-- walkthrough -->` and run literally,
each by bash, in a fresh working directory that holds the clone's `examples/` (the reader runs them
from the clone), against a private redis-server and a real `rthub serve`. What the set-up block does
is emulated (the packages are installed, the Redis and the hub get free ports), and the set-up block
is held to what is emulated. The only substitutions are the environment variables the README names:
`RTHUB_REDIS_URL` and `RTHUB_URL`. Like the reader, the test waits for the engine started in the
background to connect before the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hub.config import Settings
from hub.control.presence import live_connections
from hub.dev.embedded import free_port
from tests import ROOT
from tests.servers import RedisServer
from tests.waiting import until_serving, wait_until

README = ROOT / "README.md"
SETUP = [
    "pip install -e ./lms -e ./client -e .",  # the test runs in that environment
    "redis-server --daemonize yes",  # a private redis-server on a free port: RTHUB_REDIS_URL
    "rthub serve --log-level warning &",  # run as written, plus --port: RTHUB_URL
]
# examples/tracking.log, in order, less what the tutor's grant leaves out: the enrolments, the grade, and
# everything in the other course.
DELIVERED = [
    "load_video", "play_video", "show_transcript", "pause_video", "problem_check",
    "edx.video.played", "seek_video", "problem_check",
]
# cursor, event, anonymised learner, verb, object: what examples/adaptive_engine.py prints for xAPI.
EVENT_LINE = re.compile(r"(\d+-\d+)\s+(\S+)\s+([0-9a-f-]{36}) (\S+) (\S+)")


def blocks(marker: str) -> list[list[str]]:
    """The commands of each fenced block the README marks `<!-- {marker} -->`: `$ ` lines, with their
    backslash continuations joined as the shell joins them."""
    found = []
    for block in re.findall(rf"<!-- {re.escape(marker)} -->\n```console\n(.*?)```", README.read_text(), re.S):
        commands: list[str] = []
        continued = False
        for line in block.splitlines():
            if continued:
                commands[-1] = commands[-1][:-1] + line.lstrip()
            elif line.startswith("$ "):
                commands.append(line[2:])
            continued = bool(commands) and commands[-1].endswith("\\")
        found.append(commands)
    return found


def sample_output() -> list[str]:
    """The engine lines the README shows after the walkthrough (its first ```text block after it)."""
    text = README.read_text()
    after = text[text.index("<!-- walkthrough -->"):]
    sample = re.search(r"```text\n(.*?)```", after, re.S)
    assert sample, "the README shows what the engine prints"
    return [line for line in sample.group(1).splitlines() if line.strip() != "…"]


def test_the_readme_marks_a_set_up_block_and_a_five_command_walkthrough() -> None:
    assert blocks("walkthrough: set-up") == [SETUP], "the set-up block changed: change what the walkthrough emulates"
    (walkthrough,) = blocks("walkthrough")
    assert len(walkthrough) == 5
    assert "examples/tracking.log" in " ".join(walkthrough)


class Shell:
    """Runs the reader's commands in one working directory with one environment."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.background: list[tuple[subprocess.Popen[bytes], Path, Path]] = []

    def run(self, command: str) -> str:
        result = subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"`{command}` failed with {result.returncode}:\n{result.stderr}"
        return result.stdout

    def start(self, command: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """A command the reader ends with `&`: its output goes on (to files here) while the next ones run."""
        number = len(self.background)
        out, err = self.workdir / f".background-{number}.out", self.workdir / f".background-{number}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(["bash", "-c", command], cwd=self.workdir, env=self.env, stdout=stdout,
                                       stderr=stderr, start_new_session=True)
        self.background.append((process, out, err))
        return process, out, err

    def stop(self) -> None:
        """End what the commands started: each `&` command's process group (its bash may be gone, the
        program it started is not), then check the group is empty."""
        for process, _, _ in self.background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        for process, _, _ in self.background:
            wait_until(lambda group=process.pid: not _alive(group), 15, f"process group {process.pid} outlived SIGTERM")


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Shell, str]]:
    """A fresh working directory holding the clone's examples, a private Redis and the set-up's hub running."""
    workdir = tmp_path / "clone"
    workdir.mkdir()
    (workdir / "examples").symlink_to(ROOT / "examples")
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RTHUB_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",  # this environment's rthub and python
        RTHUB_REDIS_URL=redis.url,
        RTHUB_URL=f"http://127.0.0.1:{port}",
    )
    commands = Shell(workdir, env)
    try:
        hub, _, err = commands.start(SETUP[2].removesuffix("&") + f"--port {port}")
        try:
            until_serving(hub, f"http://127.0.0.1:{port}/healthz", "rthub serve")
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}:\n{err.read_text()}") from None
        yield commands, redis.url
    finally:
        commands.stop()
        redis.stop()


def _connected(redis_url: str, client_id: str) -> int:
    async def count() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return (await live_connections(client, Settings.from_env({}), [client_id])).get(client_id, 0)
        finally:
            await client.aclose()

    return asyncio.run(count())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.slow
def test_the_walkthrough_runs_as_written_and_the_engine_prints_the_granted_events(
    shell: tuple[Shell, str],
) -> None:
    commands, redis_url = shell
    (walkthrough,) = blocks("walkthrough")
    outputs: list[str] = []
    engine_out = engine_err = None
    client_id = ""
    for command in walkthrough:
        if command.endswith("&"):
            _, engine_out, engine_err = commands.start(command)
            client_id = json.loads((commands.workdir / "tutor.json").read_text())["client_id"]
            wait_until(lambda tutor=client_id: _connected(redis_url, tutor) == 1, 30, "the engine did not connect")
            outputs.append("")
        else:
            outputs.append(commands.run(command))
    assert engine_out is not None and engine_err is not None, "the walkthrough starts a consumer"
    wait_until(lambda: len(_lines(engine_out)) >= len(DELIVERED), 30, "the engine did not print every event")

    printed = [EVENT_LINE.fullmatch(line) for line in _lines(engine_out)]
    assert all(printed), _lines(engine_out)
    assert [match.group(2) for match in printed if match] == DELIVERED
    learners = {match.group(3) for match in printed if match}
    assert len(learners) == 2, "two learners of the course, each under one anonymised id"
    assert "learner10" not in engine_out.read_text(), "no username reaches the consumer"
    assert engine_err.read_text() == ""

    listing = outputs[walkthrough.index("rthub clients list")].splitlines()
    (tutor,) = [row for row in listing if "Adaptive tutor" in row]
    assert tutor.startswith(client_id) and tutor.split()[-1] == "1", listing
    assert re.search(r"^client_id: cl_\w+\nclient_secret: \S+$", outputs[-1], re.M), outputs[-1]

    actual = [match.groups() for match in printed if match]
    for line in sample_output():  # what the README shows is what the engine prints, cut short with "…"
        _, event, _, verb, target = line.split(None, 4)
        assert any(
            (name, said) == (event, verb) and printed_target.startswith(target.removesuffix("…"))
            for _, name, _, said, printed_target in actual
        ), line
