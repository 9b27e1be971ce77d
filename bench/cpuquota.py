"""A CPU budget for one process tree: a Linux cgroup whose CFS quota is a share of one core.

The ramp asks where each target stops keeping up. On a 2-core VM the publisher (one core, shared
with Redis and the subscribers) tops out near 2,500 events/s, below the bare loop's limit on a full
core, so the bare loop's maximum could only be estimated from its CPU per frame. Giving every
target the same fraction of a core brings each target's limit inside the publisher's reach, so
both maxima are measured and their ratio is the one-core ratio the goal asks about.

The period is short (10 ms) so a target that spends its quota waits at most a few milliseconds,
not the 100 ms of the kernel's default period. Needs root and the cpu controller, cgroup v2
(`cpu.max`) or v1 (`cpu.cfs_quota_us`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PERIOD_US = 10_000
V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")


class QuotaUnavailable(RuntimeError):
    """No writable cpu cgroup controller here."""


def _controller_root() -> tuple[Path, int]:
    if "cpu" in _read(V2_ROOT / "cgroup.controllers").split() and "cpu" in _read(
        V2_ROOT / "cgroup.subtree_control"
    ).split():
        return V2_ROOT, 2
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, 1
    raise QuotaUnavailable("no cpu cgroup controller (cgroup v2 with +cpu at the root, or v1's cpu hierarchy)")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class CpuQuota:
    """A fresh cgroup holding at most `share` of one core; processes added to it take their children with them."""

    def __init__(self, name: str, share: float) -> None:
        if not 0 < share <= os.cpu_count():
            raise ValueError(f"a CPU share must be in (0, {os.cpu_count()}], not {share}")
        root, version = _controller_root()
        self.share = share
        self.path = root / f"rthub-bench-{name}-{os.getpid()}"
        quota = round(share * PERIOD_US)
        try:
            self.path.mkdir()
            if version == 2:
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as exc:
            self.remove()
            raise QuotaUnavailable(f"cannot set a CPU quota in {root} ({exc}); run as root") from exc

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_seconds(self) -> float:
        """Time the group's processes were held back for having spent their quota, so far."""
        for line in _read(self.path / "cpu.stat").splitlines():
            name, _, value = line.partition(" ")
            if name == "throttled_time":  # v1: nanoseconds
                return int(value) / 1e9
            if name == "throttled_usec":  # v2
                return int(value) / 1e6
        return 0.0

    def remove(self) -> None:
        """Delete the group once its processes have exited (the kernel refuses while any remain)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        print(f"warning: {self.path} still holds processes; left in place", file=sys.stderr)
