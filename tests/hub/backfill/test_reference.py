"""The reference's `transform_tracking_logs`, as `bench.backfill` runs it, stores every event of a tracking
log in a real Ralph: the bench's comparison measures a reference that works."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.reference_backfill import ReferenceProject
from tests.hub.backfill.helpers import tracking_log, write_log
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer

pytestmark = [pytest.mark.timeout(600), pytest.mark.peers, pytest.mark.slow]

LMS = "http://lms.example.com"


def test_transform_tracking_logs_stores_every_event_in_ralph(ralph: RalphServer, tmp_path: Path) -> None:
    lines = tracking_log(20, seed=3, lms_root_url=LMS)
    (tmp_path / "logs").mkdir()
    log = write_log(tmp_path / "logs" / "tracking.log", lines)
    project = ReferenceProject(tmp_path / "reference", LMS)
    project.route_to(ralph.endpoint, ralph.username, ralph.password)

    done = project.transform(log, batch_size=8)

    assert (done.queued, done.unparsable, done.skipped) == (20, 0, 0)
    stored = ralph.statements()
    assert sorted(statement["timestamp"][:16] for statement in stored) == sorted(line["time"][:16] for line in lines)
    assert {statement["actor"]["account"]["homePage"] for statement in stored} == {LMS}
