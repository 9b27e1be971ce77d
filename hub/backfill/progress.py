"""What a backfill shows while it runs: a progress bar on a terminal, nothing but the summary otherwise.

The bar advances by bytes of the sources as stored (so it has a total, hence an ETA, for gzip files
and object-store files alike) and shows lines read, events queued and delivered, and events per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import IO, Protocol

from tqdm import tqdm

from hub.backfill.sources import SourceFile
from hub.backfill.store import Checkpoint

REFRESH = 0.5
REASONS_SHOWN = 10


class Counted(Protocol):
    delivered: int
    rejected: int


class Progress:
    def __init__(self, files: list[SourceFile], enabled: bool) -> None:
        self._files = files
        self._enabled = enabled
        sizes = [source.size for source in files]
        self._total = sum(size for size in sizes if size is not None) if None not in sizes else None
        self._bar: tqdm | None = None
        self._task: asyncio.Task[None] | None = None
        self._checkpoint: Checkpoint | None = None
        self._delivery: Counted | None = None
        self._done_before = 0
        self._started = time.monotonic()
        self._first_seq = 0
        self._reasons = 0

    def start(self, checkpoint: Checkpoint, delivery: Counted) -> None:
        self._checkpoint, self._delivery = checkpoint, delivery
        self._first_seq = checkpoint.seq
        if not self._enabled:
            return
        self._bar = tqdm(total=self._total, unit="B", unit_scale=True, desc="backfill", file=sys.stderr,
                         dynamic_ncols=True)
        self._task = asyncio.create_task(self._refresh())

    def read(self, checkpoint: Checkpoint, raw: IO[bytes]) -> None:
        """A batch was queued; `raw` is the file being read (its position: bytes as stored)."""
        if self._bar is None:
            return
        done = sum(source.size or 0 for source in self._files[: checkpoint.file])
        with contextlib.suppress(OSError, ValueError):
            done += raw.tell()
        self._bar.update(max(0, done - self._bar.n))

    def note(self, reason: str) -> None:
        """The endpoint refused one event for good: its reason, for the first few."""
        self._reasons += 1
        if self._reasons <= REASONS_SHOWN:
            message = f"refused by the endpoint: {reason}"
            if self._bar is not None:
                self._bar.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)

    async def _refresh(self) -> None:
        while self._bar is not None:
            self._show()
            await asyncio.sleep(REFRESH)

    def _show(self) -> None:
        if self._bar is None or self._checkpoint is None or self._delivery is None:
            return
        queued = self._checkpoint.seq
        rate = (queued - self._first_seq) / max(time.monotonic() - self._started, 1e-6)
        self._bar.set_postfix_str(
            f"lines {self._checkpoint.lines:,} queued {queued:,} delivered "
            f"{self._checkpoint.delivered + self._delivery.delivered:,} {rate:,.0f} ev/s", refresh=True
        )

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._bar is not None:
            self._show()
            self._bar.close()
            self._bar = None
