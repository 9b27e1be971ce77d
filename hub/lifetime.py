"""Processes that must not outlive their parent: the demo's redis-server, the render stage, the workers.

Linux can send a process a signal when its parent dies, however the parent dies (SIGKILL included),
which no cleanup code in the parent can promise.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies: in a child before exec (`preexec_fn`),
    or in a worker as it starts."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
