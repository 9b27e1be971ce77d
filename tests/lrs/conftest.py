from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lrs.lrs_server import RalphServer


@pytest.fixture
def ralph(tmp_path: Path) -> Iterator[RalphServer]:
    """A real Ralph LRS (file backend, one Basic user) on a free port, stopped after the test."""
    server = RalphServer(tmp_path / "ralph")
    server.start()
    yield server
    server.stop()
