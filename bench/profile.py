"""Sample a running server with py-spy and say where its time goes.

py-spy's `raw` output is one collapsed stack per line (`frame;frame;... count`). The summary
gives, over the samples where the process was busy (not waiting in the selector), the share of time
spent *in* each function (self) and *under* it (inclusive, leaving out the frames every busy sample
shares, such as the event loop itself), which is what points at a hot spot.

py-spy stops the process for each sample (its default). With `--nonblocking` it reads the stack
while the process runs, and 40 % of a busy hub's samples came back cut short (not rooted at the
entry point), their time credited to whatever frame happened to be on top; the pauses at 200 Hz
cost the profiled round some latency instead, so read its p99 with that in mind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

IDLE_FRAMES = ("EpollSelector.select", "select (selectors.py)")


def start_recording(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record` on `pid` for `seconds`; None when py-spy is not installed."""
    binary = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if binary is None:
        return None
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
         "--format", "raw", "--nolineno", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares (percent of busy samples) of the busiest functions."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_FRAMES):
            continue
        total += count
        roots[frames[0]] += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        ranked = [(frame, round(100 * count / total, 1)) for frame, count in counter.most_common()]
        return [(frame, share) for frame, share in ranked if share < 90][:top]

    partial = total - roots.most_common(1)[0][1] if roots else 0
    return {"samples": total, "partial_stacks": partial, "self": shares(self_time), "inclusive": shares(inclusive)}
