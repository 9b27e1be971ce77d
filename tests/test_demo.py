"""`rthub demo` end to end, as a new user runs it: with a private redis-server, and with none on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hub.dev.embedded import free_port
from tests.hubproc import ROOT


def _demo(env: dict[str, str], seconds: float = 6) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hub.cli", "demo", "--port", str(free_port()), "--duration", str(seconds)]
    return subprocess.run([*command, "--rate", "10"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_demo_with_a_private_redis_server_streams_granted_events() -> None:
    result = _demo(dict(os.environ))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "started a private redis-server" in out
    assert "admin page: http://127.0.0.1:" in out and "client secret" in out
    events = [line for line in out.splitlines() if line.startswith("  [consumer] ") and " -> xAPI " in line]
    assert len(events) >= 5, out
    assert "connected as cl_" in out
    webhooks = [line for line in out.splitlines() if line.startswith("  [webhook] ") and " -> Caliper " in line]
    assert webhooks, out


def test_demo_without_redis_server_uses_the_in_process_broker(tmp_path: Path) -> None:
    python_dir = Path(sys.executable).parent
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python", "python3"):
        (bin_dir / tool).symlink_to(python_dir / tool if (python_dir / tool).exists() else sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}
    assert shutil.which("redis-server", path=env["PATH"]) is None
    result = _demo(env)
    assert result.returncode == 0, result.stderr
    assert "using the in-process broker" in result.stdout
    assert sum(" -> xAPI " in line for line in result.stdout.splitlines()) >= 5, result.stdout
