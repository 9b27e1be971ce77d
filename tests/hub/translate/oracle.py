"""The reference translator as an oracle: its own virtualenv, one long-lived process, batched requests.

The reference (event-routing-backends, AGPL) is installed from the package index into
`~/.cache/rthub-test-venvs/reference-venv/` (outside the work tree, see `tests/venvs.py`) the first
time it is needed, and never imported by rthub: it runs `tests/hub/translate/oracle_runner.py` in its
own interpreter and answers over pipes.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.venvs import PeerVenvError, peer_venv

PACKAGE = "edx-event-routing-backends==9.3.8"
REFERENCE_VENV = os.environ.get("RTHUB_REFERENCE_VENV")  # a prebuilt one, used as it is
RUNNER = Path(__file__).with_name("oracle_runner.py")


class OracleUnavailable(RuntimeError):
    """The reference's virtualenv could not be built or started; the message says what failed."""


def python() -> Path:
    """The reference venv's interpreter, built once per machine (`tests/venvs.py`)."""
    if REFERENCE_VENV:
        return Path(REFERENCE_VENV) / "bin" / "python"
    try:
        return peer_venv("reference-venv", (PACKAGE,)) / "python"
    except PeerVenvError as exc:
        raise OracleUnavailable(str(exc)) from exc


class Oracle:
    """A running reference translator; `translate_many` sends a batch and returns its answers in order."""

    def __init__(self, actor_id: str, lms_root_url: str, course_name: str) -> None:
        command = [
            str(python()),
            str(RUNNER),
            "--actor-id",
            actor_id,
            "--lms-root-url",
            lms_root_url,
            "--course-name",
            course_name,
        ]
        # A file, not a pipe, so the reference's logging can never block it; closed in `close`.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1 << 20,
        )
        first = self._process.stdout.readline() if self._process.stdout else ""
        if not first:
            raise OracleUnavailable(f"the reference runner did not start:\n{self._stderr_tail()}")
        self.registered: dict[str, list[str]] = json.loads(first)["ready"]

    def translate_many(self, requests: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Answers for (translator, raw event) pairs, written by a thread so neither pipe fills up."""
        batch = [json.dumps({"translator": translator, "event": event}) + "\n" for translator, event in requests]
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None

        def feed() -> None:
            stdin.writelines(batch)
            stdin.flush()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        answers = []
        for _ in batch:
            line = stdout.readline()
            if not line:
                raise OracleUnavailable(f"the reference runner died:\n{self._stderr_tail()}")
            answers.append(json.loads(line))
        writer.join()
        return answers

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()

    def _stderr_tail(self) -> str:
        self._process.kill()
        self._process.wait()
        self._stderr.seek(0)
        return "\n".join(self._stderr.read().strip().splitlines()[-20:])
