"""Hypothesis as this suite uses it: the same examples on every run, from the source tree alone.

Fixed seeds (`derandomize`, or a test's own `@seed`), no example database (nothing read from or
written to `.hypothesis/`, so parallel workers and fresh clones start alike), and no constants mixed
in from loaded project code: Hypothesis collects those from whichever modules happen to be imported
(which differ between one module run alone, the whole suite, a worker's earlier tests, a plain clone
and an install, and change with any code change), so with them a seed would not decide the examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, HypothesisProvider

BACKEND = "rthub-seed-only"
PROFILE = "rthub"


class SeedOnlyProvider(HypothesisProvider):
    """Hypothesis's own data source without its constant pools."""

    def _maybe_draw_constant(self, choice_type: Any, constraints: Any, *, p: float = 0.05) -> None:
        return None


AVAILABLE_PROVIDERS[BACKEND] = SeedOnlyProvider
settings.register_profile(PROFILE, derandomize=True, database=None, backend=BACKEND)
settings.load_profile(PROFILE)
