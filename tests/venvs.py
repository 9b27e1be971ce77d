"""Where tests build the virtualenvs of real peers whose pins clash with ours (Tutor, Ralph, the
reference translator): outside the work tree, so nothing a peer package ships (the reference
translator's own fixtures, say) ever sits among the project's files. `RTHUB_TEST_VENVS` moves them.
"""

from __future__ import annotations

import os
from pathlib import Path

VENVS = Path(os.environ.get("RTHUB_TEST_VENVS", Path.home() / ".cache" / "rthub-test-venvs"))
