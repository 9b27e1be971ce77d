"""The publisher's local spool: events that could not reach Redis wait in files, in order, bounded in size.

Layout: `spool_dir/<owner>/` per LMS process, holding a `lock` file the owner keeps `flock`ed for its
lifetime, and numbered segment files. A segment is an 8-byte header (the offset of the first record
not yet flushed) followed by records, each a 4-byte big-endian length and the encoded event.

- Appends go to the newest segment; a full segment starts the next one.
- When the spool would exceed `max_bytes`, whole segments are dropped, oldest first, and the events
  lost are counted: recent events matter most to a real-time consumer, and dropping a file costs
  the request nothing (no rewriting).
- The flusher reads records from the oldest segment and advances the header after Redis took them,
  so a restart resumes where the last flush stopped (a crash between the two re-sends one batch).
- Processes never share a directory: a process that finds a directory whose lock nobody holds (its
  owner died) adopts it and flushes it before its own events, which are newer.
- Spooled events hold learner PII, and whatever is adopted gets published: the spool root must be
  a real directory (not a symlink) owned by this user with mode 0700 (it is created so, and anything
  else is refused with `UnsafeSpool`), directories and segments are created 0700/0600, and only
  orphans owned by this user are adopted. The default root is a per-user service directory
  (`$XDG_STATE_HOME/rthub`, else `~/.local/state/rthub`), not a predictable name in a shared /tmp.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rthub.spool")

HEADER = struct.Struct(">Q")
LENGTH = struct.Struct(">I")
SEGMENTS = 8
LOCK_NAME = "lock"
FLUSH_BATCH = 200
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
# The flusher sleeps this long when idle, and looks for orphans of dead sibling processes this often.
IDLE_WAIT = 1.0
ORPHAN_RESCAN = 30.0


class UnsafeSpool(PermissionError):
    """The spool directory could be read or planted by another user; nothing is spooled there."""


def default_spool_dir(redis_url: str, prefix: str) -> Path:
    """One directory per (Redis, prefix) in this user's state directory, readable at a glance.

    A service account without a usable home falls back to a per-uid directory under the system temp
    dir; the ownership and mode checks make a directory planted there by someone else useless.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)[:40]
    digest = hashlib.sha256(f"{redis_url}\n{prefix}".encode()).hexdigest()[:8]
    return _state_dir() / f"spool-{safe}{digest}"


def _state_dir() -> Path:
    configured = os.environ.get("XDG_STATE_HOME")
    if configured and os.path.isabs(configured):
        return Path(configured) / "rthub"
    home = Path.home()
    if home.is_dir() and os.access(home, os.W_OK):
        return home / ".local" / "state" / "rthub"
    return Path(tempfile.gettempdir()) / f"rthub-{os.getuid()}"


def secure_dir(path: Path) -> None:
    """Create `path` (mode 0700) if needed, then insist it is a real directory of ours that nobody else
    can enter; raise `UnsafeSpool` otherwise."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise UnsafeSpool(f"spool directory {path}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSpool(f"spool directory {path} is not a directory (a symlink?)")
    if info.st_uid != os.getuid():
        raise UnsafeSpool(f"spool directory {path} belongs to uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o077:
        raise UnsafeSpool(f"spool directory {path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 700")


def _owned_dir(path: Path) -> bool:
    """A real directory of this user's (an orphan worth adopting)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


@dataclass(eq=False)
class Segment:
    path: Path
    size: int
    records: int
    flushed: int = 0

    @property
    def pending(self) -> int:
        return self.records - self.flushed


@dataclass
class Batch:
    """Records read for flushing; `commit` them once Redis took them."""

    segment: Segment
    payloads: list[bytes]
    end: int


class Spool:
    """A bounded FIFO of encoded events in files, safe for the threads of one process."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, max_bytes // SEGMENTS)
        self.home = self.root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()
        self._segments: list[Segment] = []
        self._next = 0
        self._bytes = 0
        self.pending = 0
        self.dropped = 0

    def append(self, payload: bytes) -> None:
        """Store one event after all others; drop the oldest segments when the spool is full."""
        record = LENGTH.pack(len(payload)) + payload
        with self._mutex:
            current = self._segments[-1] if self._segments else None
            if current is None or current.size + len(record) > self.segment_bytes:
                current = self._new_segment()
            while self._bytes + len(record) > self.max_bytes and len(self._segments) > 1:
                self._drop(self._segments[0])
            with current.path.open("ab") as handle:
                handle.write(record)
            current.size += len(record)
            current.records += 1
            self._bytes += len(record)
            self.pending += 1

    def read(self, limit: int) -> Batch | None:
        """Up to `limit` of the oldest unflushed records, or None when the spool is empty."""
        with self._mutex:
            while self._segments:
                head = self._segments[0]
                if head.pending:
                    payloads, end = _read_records(head.path, limit)
                    return Batch(head, payloads, end)
                if head is self._segments[-1]:
                    return None
                self._remove(head)
            return None

    def commit(self, batch: Batch) -> None:
        """Mark a batch flushed; a segment that was dropped meanwhile needs nothing."""
        with self._mutex:
            if batch.segment not in self._segments:
                return
            _set_offset(batch.segment.path, batch.end)
            batch.segment.flushed += len(batch.payloads)
            self.pending -= len(batch.payloads)
            if not batch.segment.pending and batch.segment is not self._segments[-1]:
                self._remove(batch.segment)

    def has_orphans(self) -> bool:
        """Whether a dead process left events here (a few syscalls; none when the directory is absent)."""
        found = self.orphans()
        try:
            return next(found, None) is not None
        finally:
            found.close()

    def orphans(self) -> Iterator[Orphan]:
        """Directories left by dead processes, oldest first, each locked for the caller while yielded."""
        if not self.root.is_dir():
            return
        try:
            secure_dir(self.root)
        except UnsafeSpool as exc:
            log.error("not adopting spooled events: %s", exc)
            return
        for path in sorted(self.root.iterdir(), key=_mtime):
            if path == self.home or path.name.startswith(".") or not _owned_dir(path):
                continue
            try:
                fd = _lock(path / LOCK_NAME, blocking=False)
            except (BlockingIOError, FileNotFoundError):
                continue
            try:
                yield Orphan(path)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Release the lock; unflushed events stay on disk for the next process to adopt."""
        with self._mutex:
            if self._lock_fd is None:
                return
            if not self.pending:
                shutil.rmtree(self.home, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _new_segment(self) -> Segment:
        if self._lock_fd is None:  # the directory exists only once something had to wait
            # Locked before it gets its visible name, so no other process ever takes it for an orphan.
            secure_dir(self.root)
            staging = self.root / f".{self.home.name}"
            staging.mkdir(mode=0o700)
            self._lock_fd = _lock(staging / LOCK_NAME, blocking=True)
            staging.rename(self.home)
        path = self.home / f"{self._next:012d}.seg"
        self._next += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(HEADER.pack(HEADER.size))
        segment = Segment(path, HEADER.size, 0)
        self._segments.append(segment)
        self._bytes += segment.size
        return segment

    def _drop(self, segment: Segment) -> None:
        self.dropped += segment.pending
        self.pending -= segment.pending
        self._remove(segment)

    def _remove(self, segment: Segment) -> None:
        self._segments.remove(segment)
        self._bytes -= segment.size
        segment.path.unlink(missing_ok=True)


class Orphan:
    """A dead process's spool directory, read segment by segment; removed once empty."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def batches(self, limit: int) -> Iterator[tuple[Path, list[bytes], int]]:
        """(segment, records, end offset) in order; `commit` each once published, so a crash resumes there."""
        for segment in sorted(self.path.glob("*.seg")):
            if segment.is_symlink() or segment.stat().st_uid != os.getuid():
                log.error("not adopting %s: not a file of this user's", segment)
                segment.unlink()
                continue
            start = None
            while True:
                payloads, start = _read_records(segment, limit, start)
                if not payloads:
                    break
                yield segment, payloads, start
            segment.unlink()

    @staticmethod
    def commit(segment: Path, end: int) -> None:
        _set_offset(segment, end)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _read_records(path: Path, limit: int, start: int | None = None) -> tuple[list[bytes], int]:
    """Records from `start` (default: the header's offset) on; a torn last record (a crash mid-write) ends the read."""
    payloads: list[bytes] = []
    with path.open("rb") as handle:
        (offset,) = HEADER.unpack(handle.read(HEADER.size))
        offset = offset if start is None else start
        handle.seek(offset)
        while len(payloads) < limit:
            prefix = handle.read(LENGTH.size)
            if len(prefix) < LENGTH.size:
                break
            (length,) = LENGTH.unpack(prefix)
            payload = handle.read(length)
            if len(payload) < length:
                break
            payloads.append(payload)
            offset += LENGTH.size + length
    return payloads, offset


def _set_offset(path: Path, offset: int) -> None:
    with contextlib.suppress(FileNotFoundError), path.open("r+b") as handle:
        handle.write(HEADER.pack(offset))


def _lock(path: Path, blocking: bool) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        raise
    return fd


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class Flusher:
    """A daemon thread that empties the spool into Redis: adopted orphans first, then this process's events.

    `write` sends a batch of encoded events in order (one pipelined round trip) or raises; on error
    the thread waits with backoff and tries the same batch again. While `backlog` is true the
    publisher must spool new events too, so nothing overtakes what is waiting.
    """

    def __init__(
        self,
        spool: Spool,
        write: Callable[[list[bytes]], object],
        on_flushed: Callable[[int], None] | None = None,
        batch: int = FLUSH_BATCH,
    ) -> None:
        self.spool = spool
        self._write = write
        self._on_flushed = on_flushed
        self._batch = batch
        self.adopting = spool.has_orphans()
        self.flushed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rthub-spool-flusher", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> bool:
        return self.adopting or self.spool.pending > 0

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        rescan_at = time.monotonic() + ORPHAN_RESCAN
        while not self._stop.is_set():
            try:
                if self.adopting or time.monotonic() >= rescan_at:
                    self._adopt()
                    self.adopting = False
                    rescan_at = time.monotonic() + ORPHAN_RESCAN
                while not self._stop.is_set() and (batch := self.spool.read(self._batch)) is not None:
                    self._write(batch.payloads)
                    self.spool.commit(batch)
                    self._count(len(batch.payloads))
                backoff = BACKOFF_FIRST
            except Exception as exc:  # Redis down, or a disk error: keep the events, try again later
                log.warning("spool flush failed (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self._wake.wait(IDLE_WAIT)
            self._wake.clear()

    def _adopt(self) -> None:
        for orphan in self.spool.orphans():
            for segment, payloads, end in orphan.batches(self._batch):
                self._write(payloads)
                orphan.commit(segment, end)
                self._count(len(payloads))
            orphan.remove()

    def _count(self, flushed: int) -> None:
        self.flushed += flushed
        if self._on_flushed is not None:
            self._on_flushed(flushed)
