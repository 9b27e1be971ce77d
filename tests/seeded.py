"""Hypothesis as this suite uses it: the same examples on every run, from the source tree alone.

Fixed seeds (`derandomize`, or a test's own `@seed`), no example database (nothing read from or
written to `.hypothesis/`, so parallel workers and fresh clones start alike), and no constants mixed
in from loaded project code: Hypothesis collects those from whichever modules happen to be imported
(which differ between one module run alone, the whole suite, a worker's earlier tests, a plain clone
and an install, and change with any code change), so with them a seed would not decide the examples.
Hypothesis has no setting for that last one; its collector is replaced by an empty pool (its own
constants, fixed per Hypothesis version, stay).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants

PROFILE = "rthub"
NO_LOCAL_CONSTANTS = Constants()


def _no_local_constants() -> Constants:
    return NO_LOCAL_CONSTANTS


providers._get_local_constants = _no_local_constants
settings.register_profile(PROFILE, derandomize=True, database=None)
settings.load_profile(PROFILE)
