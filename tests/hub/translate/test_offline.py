"""`rthub translate FILE --to ...` (here `python -m hub.translate`): tracking-log lines to JSON lines."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from ralph.models.xapi.base.statements import BaseXapiStatement

from hub.anonymise import RedisIdStore
from hub.config import Settings
from hub.dev.embedded import free_port
from hub.translate.offline import main
from tests.hub.translate import fixtures, spec
from tests.servers import RedisServer

LEARNER = "42"  # the fixtures' LMS user id
NAMES = ["play_video", "edx.forum.thread.voted", "problem_check", "edx.ui.lms.link_clicked"]


def _write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", [".log", ".gz"])
def test_cli_translates_a_tracking_log(tmp_path: Path, suffix: str) -> None:
    lines = [json.dumps(fixtures.RAW_EVENTS[name]) for name in NAMES] + ["{broken", ""]
    source = _write(tmp_path / f"tracking{suffix}", lines)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.translate",
            str(source),
            "--to",
            "xapi",
            "--lms-root-url",
            "https://lms.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1  # one line was rejected
    assert "line 5: not JSON" in done.stderr
    assert "translated=4 outputs=4 no_translation=0 no_learner=0 rejected=1" in done.stderr
    statements = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["verb"]["display"]["en"] for s in statements] == ["played", "voted", "evaluated", "navigated"]
    assert len({s["actor"]["account"]["name"] for s in statements}) == 1  # one learner, one id for the run
    for statement in statements:
        assert statement["actor"]["account"]["homePage"] == "https://lms.test"
        BaseXapiStatement(**statement)
    assert fixtures.PII["username"] not in done.stdout


def test_caliper_output_file_and_fixed_actor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "tracking.log", [json.dumps(fixtures.RAW_EVENTS[name]) for name in NAMES])
    target = tmp_path / "out.jsonl"
    actor = "3c1d2e4f-0a9b-4c8d-9e7f-6a5b4c3d2e1f"
    assert main([str(source), "--to", "caliper", "-o", str(target), "--actor-id", actor]) == 0
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert [event["type"] for event in events] == ["MediaEvent", "GradeEvent", "NavigationEvent"]
    assert all(spec.problems(event) == [] for event in events)
    assert {event["actor"]["id"].rsplit("/", 1)[1] for event in events} == {actor}
    assert "no_translation=1" in capsys.readouterr().err


def _translate(source: Path, *options: str, to: str = "xapi") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.translate", str(source), "--to", to, *options],
        capture_output=True, text=True, timeout=60, check=False,
    )


# Every fixture (one event per name, both LMS shapes among them), so each builder runs in two processes
# with different hash seeds: any output that depended on set or dict order of a process would differ.
EVERY_NAME = [json.dumps(fixtures.RAW_EVENTS[name]) for name in sorted(fixtures.RAW_EVENTS)]


@pytest.mark.parametrize("to", ["xapi", "caliper"])
def test_every_name_translates_identically_on_two_runs(tmp_path: Path, to: str) -> None:
    source = _write(tmp_path / "tracking.log", EVERY_NAME)
    first, second = _translate(source, to=to), _translate(source, to=to)
    assert first.returncode == second.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) >= 59 and first.stdout == second.stdout


@pytest.mark.parametrize("suffix", [".log", ".gz"])
def test_the_same_input_translates_to_the_same_output_on_every_run(tmp_path: Path, suffix: str) -> None:
    lines = [json.dumps(fixtures.RAW_EVENTS[name]) for name in NAMES]
    source = _write(tmp_path / f"tracking{suffix}", lines)
    first, second = _translate(source), _translate(source)
    assert first.returncode == second.returncode == 0
    assert first.stdout and first.stdout == second.stdout
    from_stdin = subprocess.run([sys.executable, "-m", "hub.translate", "-", "--to", "xapi"], input=None,
                                stdin=source.open("rb"), capture_output=True, timeout=60, check=False)
    assert from_stdin.stdout.decode() == first.stdout
    other = _write(tmp_path / f"other{suffix}", [*lines, json.dumps(fixtures.RAW_EVENTS["showanswer"])])
    actors = {json.loads(line)["actor"]["account"]["name"] for line in _translate(other).stdout.splitlines()}
    mine = {json.loads(line)["actor"]["account"]["name"] for line in first.stdout.splitlines()}
    assert len(mine) == 1 and not actors & mine  # a pseudonym holds for one input only
    assert fixtures.PII["username"] not in first.stdout


def test_with_redis_each_learner_gets_the_deployments_anonymised_id(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix)
    source = _write(tmp_path / "tracking.log", [json.dumps(fixtures.RAW_EVENTS[name]) for name in NAMES])
    options = ("--redis-url", redis_server.url, "--redis-prefix", prefix, "--consumer-type", "enterprise")
    first, second = _translate(source, *options), _translate(source, *options)
    assert first.returncode == 0 and first.stdout == second.stdout
    every = _write(tmp_path / "every.log", EVERY_NAME)
    for to in ("xapi", "caliper"):
        once, again = _translate(every, *options, to=to), _translate(every, *options, to=to)
        assert once.returncode == again.returncode == 0, once.stderr
        assert once.stdout and once.stdout == again.stdout

    async def stored() -> str:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            return await RedisIdStore(redis, settings).get_or_create("enterprise", LEARNER)
        finally:
            await redis.aclose()

    assert {json.loads(line)["actor"]["account"]["name"] for line in first.stdout.splitlines()} == {
        asyncio.run(stored())
    }


def test_an_unreachable_redis_is_named(tmp_path: Path) -> None:
    source = _write(tmp_path / "tracking.log", [json.dumps(fixtures.RAW_EVENTS["play_video"])])
    done = _translate(source, "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 2 and "rthub translate: Redis at redis://127.0.0.1:" in done.stderr
    assert not done.stdout
