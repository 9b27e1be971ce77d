"""A real LRS for tests: Ralph 5.1.0 in its own virtualenv (it pins an older Starlette than ours).

The virtualenv is built once per machine (`tests/venvs.py`); each server gets its own data directory,
auth file and a Basic user whose statements go to `<data>/<user>/`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from hub.dev.embedded import free_port
from tests.venvs import clean_environ, peer_venv
from tests.waiting import until_serving

PINS = ("ralph-malph[cli,lrs]==5.1.0", "requests")
LAUNCHER = Path(__file__).with_name("launch_ralph.py")


def ralph_venv() -> Path:
    """The Ralph virtualenv's python (built once per machine, see `tests/venvs.py`)."""
    return peer_venv("ralph-venv", PINS) / "python"


class RalphServer:
    def __init__(self, directory: Path, username: str = "rthub", password: str = "lrs-password") -> None:
        self.python = ralph_venv()
        self.directory = directory
        self.username = username
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        data = directory / "statements"
        (data / username).mkdir(parents=True, exist_ok=True)
        self.env = {
            **clean_environ(),
            "RALPH_APP_DIR": str(directory / "app"),
            "RALPH_AUTH_FILE": str(directory / "auth.json"),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(data),
            "RALPH_BACKENDS__DATA__FS__DEFAULT_DIRECTORY_PATH": str(data),
        }
        subprocess.run(
            [str(self.python), "-m", "ralph", "auth", "-u", username, "-p", password, "-s", "all",
             "-t", username, "-M", f"mailto:{username}@example.com", "-w"],
            env=self.env, check=True, capture_output=True,
        )

    @property
    def endpoint(self) -> str:
        """The xAPI endpoint (statements live under `{endpoint}statements`)."""
        return f"http://127.0.0.1:{self.port}/xAPI/"

    def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [str(self.python), str(LAUNCHER), "127.0.0.1", str(self.port)], env=self.env, cwd=self.directory
        )
        until_serving(self.process, f"http://127.0.0.1:{self.port}/__lbheartbeat__", "ralph", timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def statements(self) -> list[dict]:
        """Every stored statement, read back through `GET /xAPI/statements`, following `more`."""
        found: list[dict] = []
        url = f"{self.endpoint}statements?limit=500"
        with httpx.Client(auth=(self.username, self.password), timeout=30,
                          headers={"X-Experience-API-Version": "1.0.3"}) as client:
            while url:
                response = client.get(url)
                response.raise_for_status()
                page = response.json()
                found += page["statements"]
                more = page.get("more")
                url = f"http://127.0.0.1:{self.port}{more}" if more else ""
        return found
