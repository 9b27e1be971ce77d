"""The test suite; its folders mirror the code's (`tests/lms`, `tests/hub/<package>`, `tests/auth`,
`tests/client`), with `tests/e2e` for scenarios across every stage."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository's root."""

SEND_TIMEOUT = 2.0
"""The LMS plug-in's Redis timeout in tests that check delivery rather than the plug-in's latency budget.

The plug-in's default (50 ms) is what an LMS request may spend; on a loaded two-core test machine a
round trip now and then takes longer, the event is spooled and delivered later, and `send` returns no
cursor for the test to compare. Tests of that budget and of the spool (`tests/lms/`) keep the default.
"""
