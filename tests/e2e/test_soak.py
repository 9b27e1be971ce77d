"""The fault soak, short (`bench/soak`; the long runs are in docs/reliability.md, "The fault soak").

Two hubs, one Redis, three LMS processes, WebSocket streams, webhook receivers, a Caliper endpoint and
a Ralph LRS, about 30 s of seeded faults (processes SIGKILLed and SIGTERMed, network latency, stalls,
resets and partitions through the harness's proxies, an LMS killed with events in its spool), clients
created, changed, rotated and revoked meanwhile; then the checker judges everything every consumer
received against what it was entitled to when each event was published.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.soak.checker import check
from bench.soak.report import render, silent_losses, unauthorized
from bench.soak.run import Config, Soak

pytestmark = [pytest.mark.slow, pytest.mark.peers]

SEED = 43


def test_a_short_soak_loses_nothing_silently_and_delivers_nothing_unauthorized(tmp_path: Path) -> None:
    collected = asyncio.run(Soak(Config(minutes=0.55, seed=SEED, rate=45, workdir=tmp_path, settle=30)).run())
    result = check(collected)
    print(render(collected, result))
    rows = {row.consumer: row for row in result["rows"]}
    assert len([fault for fault in collected.faults if fault.ended]) >= 5
    assert result["published"] > 500 and rows["ws-all#1"].required > 400
    assert silent_losses(result) == 0
    assert unauthorized(result) == 0
    assert result["token_checks"], "the revoked client's and the rotated secret's credentials were tried"
    for row in rows.values():
        assert row.order_violations == 0 and row.mismatched == 0 and row.bad_signatures == 0, row
        assert row.delivered + row.dead_lettered + row.gap >= row.required > 0 or row.consumer == "ws-late", row
