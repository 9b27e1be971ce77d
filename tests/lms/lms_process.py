"""The test LMS (tests/lms/platform) as a process: Django, users, edx-platform's external_user_ids app stood
in for by a real-database copy of its models, and rthub's plug-in configured through `EVENT_TRACKING_BACKENDS`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from tests.hubproc import ROOT

PLATFORM = Path(__file__).with_name("platform")


class LmsProcess:
    def __init__(self, directory: Path, redis_url: str, prefix: str, users: str) -> None:
        self.db = directory / "lms.sqlite3"
        self.users = users
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(PLATFORM), str(ROOT), str(ROOT / "lms"), os.environ.get("PYTHONPATH", "")]
            ),
            "DJANGO_SETTINGS_MODULE": "lms_settings",
            "TEST_LMS_DB": str(self.db),
            "TEST_LMS_REDIS_URL": redis_url,
            "TEST_LMS_PREFIX": prefix,
            "TEST_LMS_SPOOL": str(directory / "spool"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PLATFORM / "lms.py"), "--users", self.users],
            env=self.env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == b"ready"

    def emit(self, event: dict[str, Any]) -> None:
        """One event through event-tracking and the plug-in, as a request of the LMS would."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        line = {"name": event["name"], "data": event["data"], "context": event["context"]}
        self.process.stdin.write(orjson.dumps(line) + b"\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == b"sent"

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=20)
            self.process = None

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m rthub_lms.external_ids ...` beside the LMS (its settings and database)."""
        return subprocess.run([sys.executable, "-m", "rthub_lms.external_ids", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    def external_ids(self, type_name: str) -> dict[str, str]:
        """LMS user id -> external id of `type_name`, as the LMS's database holds them."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute(
                "SELECT e.user_id, e.external_user_id FROM external_user_ids_externalid e "
                "JOIN external_user_ids_externalidtype t ON t.id = e.external_id_type_id WHERE t.name = ?",
                (type_name,),
            ).fetchall()
        return {str(user): str(uuid.UUID(hex=value)) for user, value in rows}
