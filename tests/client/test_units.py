"""The SDK's pure parts: backoff bounds and growth, cursor order."""

from __future__ import annotations

import pytest
from rthub_client import Backoff, Stream
from rthub_client.cursors import cursor_key


def test_backoff_delays_stay_under_a_doubling_ceiling_capped_and_reset() -> None:
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    samples = [[backoff.next_delay() for _ in ceilings] for backoff in (Backoff(0.5, 4.0) for _ in range(200))]
    for position, ceiling in enumerate(ceilings):
        delays = [sample[position] for sample in samples]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8, "full jitter spreads over the whole range"
        assert len(set(delays)) > 150, "jittered, not in step"
    backoff = Backoff(0.5, 4.0)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5 and backoff.attempt == 1


def test_cursors_compare_as_integer_pairs() -> None:
    assert cursor_key("999-5") < cursor_key("1000-0") < cursor_key("1000-1") < cursor_key("1000-10")
    with pytest.raises(ValueError):
        Stream("http://hub", "id", "secret", resume_from="not-a-cursor")
