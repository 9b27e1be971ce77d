"""The test suite; its folders mirror the code's (`tests/lms`, `tests/hub/<package>`, `tests/auth`,
`tests/client`), with `tests/e2e` for scenarios across every stage."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository's root."""
