from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.delivery.webhook.formats.lrs_server import RalphServer, ralph_venv


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Ralph's virtualenv before any test runs: a first build (pip) outlasts a test's timeout."""
    if any("ralph" in getattr(item, "fixturenames", ()) for item in session.items):
        ralph_venv()


@pytest.fixture
def ralph(tmp_path: Path) -> Iterator[RalphServer]:
    """A real Ralph LRS (file backend, one Basic user) on a free port, stopped after the test."""
    server = RalphServer(tmp_path / "ralph")
    server.start()
    yield server
    server.stop()
