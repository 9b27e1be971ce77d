"""The reference's `transform_tracking_logs` (event-routing-backends) into an LRS, as an operator runs it.

A minimal Django project in a directory of its own: an sqlite database migrated once, the reference's
settings with the oracle's edx-platform stubs (`tests/hub/translate/reference_settings.py`) and one
`RouterConfiguration` row for the LRS (Basic auth), in the reference's virtualenv (`tests/hub/translate/
oracle.py` builds it). The command reads its source through Apache Libcloud's LOCAL driver and sends
through the router's xAPI LRS client (`--destination_provider LRS`), batches of `--batch_size`, with no
sleep between batches (the reference's default sleeps 10 s after each). Celery runs its send tasks in the
command's process, so every statement is in the LRS when the process exits.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests import ROOT
from tests.hub.translate.oracle import python as reference_python
from tests.venvs import clean_environ

SETTINGS = ROOT / "tests" / "hub" / "translate"
# The external id the stubbed LMS gives every learner: any fixed id of the bench's own (never the corpus's).
ACTOR_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://rthub.invalid/bench/reference-backfill/learner"))
SUMMARY = re.compile(r"Queued (\d+) log lines, could not parse (\d+) log lines, skipped (\d+) log lines")


class ReferenceFailed(RuntimeError):
    """A step of the reference's project failed; the message holds its command and output."""


@dataclass(frozen=True)
class Transformed:
    """One `transform_tracking_logs` run: wall-clock seconds from process start to exit, and its summary."""

    seconds: float
    queued: int
    unparsable: int
    skipped: int


class ReferenceProject:
    """The Django project the reference's management commands run in; `directory` holds its database."""

    def __init__(self, directory: Path, lms_root_url: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.python = str(reference_python())
        self.env = {
            **clean_environ(),
            "PYTHONPATH": str(SETTINGS),
            "DJANGO_SETTINGS_MODULE": "reference_settings",
            "REFERENCE_DATABASE": str(directory / "db.sqlite3"),
            "REFERENCE_LMS_ROOT_URL": lms_root_url,
            "REFERENCE_ACTOR_ID": ACTOR_ID,
        }
        self._django("migrate", "--verbosity", "0")

    def route_to(self, endpoint: str, username: str, password: str) -> None:
        """Send xAPI to this LRS only (the one enabled router, as an operator configures it in the admin)."""
        row = {"backend_name": "xAPI", "route_url": endpoint, "auth_scheme": "Basic", "username": username,
               "password": password, "enabled": True}
        self._django("shell", "-c", "from event_routing_backends.models import RouterConfiguration as R\n"
                     f"R.objects.all().delete()\nR.objects.create(**{row!r})")

    def transform(self, log: Path, batch_size: int) -> Transformed:
        """`transform_tracking_logs` on one local file into the routed LRS, timed from process start to exit."""
        source = {"key": str(log.parent.parent), "container": log.parent.name, "prefix": log.name}
        started = time.perf_counter()
        done = self._django("transform_tracking_logs", "--source_provider", "LOCAL",
                            "--source_config", json.dumps(source), "--destination_provider", "LRS",
                            "--transformer_type", "xapi", "--batch_size", str(batch_size),
                            "--sleep_between_batches_secs", "0")
        seconds = time.perf_counter() - started
        summary = SUMMARY.search(done.stdout)
        if summary is None:
            raise ReferenceFailed(f"no summary line in its output:\n{done.stdout[-2000:]}")
        queued, unparsable, skipped = (int(group) for group in summary.groups())
        return Transformed(seconds, queued, unparsable, skipped)

    def _django(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [self.python, "-m", "django", *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-30:])
            raise ReferenceFailed(f"`{' '.join(args[:1])}` exited {done.returncode}:\n{tail}")
        return done
