"""Registry backup: `rthub admin export FILE` and `rthub admin import FILE` (docs/contract.md, "Registry
backup file").

The client registry lives only in Redis, and a Redis that evicts keys or is lost takes every client with
it. A backup is a JSON-lines file: a header, the key fingerprints, one line per client record (secret
hashes, the webhook signing secret the hub signs with, encrypted endpoint credentials), the anonymised
ids in batches (streamed with HSCAN, so millions of learners fit), and an end line with the counts, so a
truncated file is refused. Never a clear client secret or endpoint credential.

Client records are read and written by `ClientRegistry`, anonymised ids by `RedisIdStore`; this module
reads and writes the file, and checks all of it before anything is written to Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from auth import keyring
from auth.clients import CONSUMER_TYPES, Client, ValidationError, check_record
from auth.registry import ClientRegistry
from hub.anonymise import RedisIdStore, RestoreMode

FORMAT = "rthub-registry-backup"
VERSION = 1
KINDS = ("keys", "client", "anonymised_ids", "end")


class BackupError(ValueError):
    """The file is not a backup this version can import; the message says which line and why."""


class ImportRefused(Exception):
    """Importing would overwrite what Redis holds, or needs other key files (`--replace`, `--force`)."""


@dataclass
class Backup:
    """A checked backup file; the anonymised ids are only counted, and read again as they are written."""

    header: dict[str, Any]
    keys: dict[str, str]
    clients: list[Client]
    anonymised_ids: int
    handle: IO[str]

    def anonymised_batches(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(consumer type, user id -> anonymised id) per batch line, from a second pass over the file."""
        self.handle.seek(0)
        self.handle.readline()  # the header
        for line in self.handle:
            item = json.loads(line)
            if "anonymised_ids" in item:
                yield item["anonymised_ids"]["type"], item["anonymised_ids"]["ids"]


@dataclass
class ImportReport:
    """What an import did (or, dry, would do): each client's standing, and the anonymised ids written."""

    clients: dict[str, str]
    keys: str
    anonymised_ids: dict[str, int] = field(default_factory=lambda: {"new": 0, "same": 0, "differing": 0})

    def counts(self) -> dict[str, int]:
        standing = list(self.clients.values())
        return {name: standing.count(name) for name in ("new", "same", "differs")}


async def export(registry: ClientRegistry, ids: RedisIdStore | None, out: IO[str]) -> dict[str, int]:
    """Write the registry (and, unless `ids` is None, the anonymised ids) to `out`; returns the counts."""
    clients = await registry.list_all()
    keys = await _key_material(registry)
    _line(out, {
        "format": FORMAT,
        "version": VERSION,
        "prefix": registry.settings.redis_prefix,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "anonymised_ids": ids is not None,
    })
    if keys:
        _line(out, {"keys": keys})
    for client in clients:
        _line(out, {"client": {"client_id": client.client_id, "record": client.to_hash()}})
    exported = 0
    if ids is not None:
        total = sum([await ids.count(consumer_type) for consumer_type in CONSUMER_TYPES])
        with _progress(total, "exporting anonymised ids") as bar:
            for consumer_type in CONSUMER_TYPES:
                async for batch in ids.scan(consumer_type):
                    _line(out, {"anonymised_ids": {"type": consumer_type, "ids": batch}})
                    exported += len(batch)
                    bar.update(len(batch))
    counts = {"clients": len(clients), "anonymised_ids": exported}
    _line(out, {"end": counts})
    return counts


@contextlib.contextmanager
def output_file(path: str) -> Iterator[IO[str]]:
    """Where to write a backup: a file that appears only by its final rename, complete (mode 0600: it
    holds webhook signing secrets and personal-data mappings), or stdout for `-`."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def open_file(path: str) -> IO[str]:
    """The backup to import, seekable (it is read twice): stdin (`-`) is copied to an unnamed temporary file."""
    if path == "-":
        spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115  (the caller closes it)
        for line in sys.stdin:
            spool.write(line)
        spool.seek(0)
        return spool
    return open(path, encoding="utf-8")


def read_backup(handle: IO[str]) -> Backup:
    """Check the whole file: format and version, one known kind per line, every client record, every
    anonymised id, and an end line whose counts match. Raises `BackupError`."""
    header: dict[str, Any] | None = None
    keys: dict[str, str] = {}
    clients: dict[str, Client] = {}
    anonymised = 0
    end: Any = None
    number = 0
    for number, line in enumerate(handle, 1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackupError(f"line {number}: not JSON ({exc.msg})") from exc
        if number == 1:
            header = _check_header(item)
            continue
        if end is not None:
            raise BackupError(f"line {number}: nothing may follow the end line")
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in KINDS:
            raise BackupError(f"line {number}: expected an object with one of {', '.join(KINDS)}")
        (kind, body), = item.items()
        try:
            if kind == "keys":
                keys = _check_keys(body)
            elif kind == "client":
                client = _check_client(body)
                if client.client_id in clients:
                    raise BackupError(f"client {client.client_id} appears twice")
                clients[client.client_id] = client
            elif kind == "anonymised_ids":
                anonymised += _check_ids(body)
            else:
                end = body
        except ValidationError as exc:
            raise BackupError(f"line {number}: invalid {exc.field}: {exc.message}") from exc
        except BackupError as exc:
            raise BackupError(f"line {number}: {exc}") from exc
    if header is None:
        raise BackupError("the file is empty")
    expected = {"clients": len(clients), "anonymised_ids": anonymised}
    if end is None:
        raise BackupError(f"no end line after line {number}: the file is incomplete")
    if end != expected:
        raise BackupError(f"the end line says {json.dumps(end)} but the file holds {json.dumps(expected)}")
    return Backup(header, keys, list(clients.values()), anonymised, handle)


async def import_backup(
    registry: ClientRegistry,
    ids: RedisIdStore | None,
    backup: Backup,
    *,
    replace: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Put a checked backup into Redis: nothing is written when a client would be overwritten (unless
    `replace`) or the key fingerprints differ (unless `force`); `dry_run` only reports."""
    present = await _key_material(registry)
    # A field Redis lacks is restored; one it records otherwise is a conflict (a running hub may already
    # have recorded its signing key again after a loss, and that is no conflict when it is the same key).
    differing = sorted(name for name in backup.keys if name in present and present[name] != backup.keys[name])
    missing = {name: value for name, value in backup.keys.items() if name not in present}
    if differing and not force:
        raise ImportRefused(
            f"the key fingerprints in Redis differ from the file's ({', '.join(differing)}): the hubs on this "
            "Redis use other key files, which would not decrypt the endpoint credentials or verify tokens "
            "signed with the file's keys. Use the key files of the exported deployment, or --force."
        )
    standing = await registry.compare(backup.clients)
    conflicts = [client_id for client_id, state in standing.items() if state == "differs"]
    if conflicts and not replace:
        raise ImportRefused(
            f"{len(conflicts)} client(s) exist here with a different record: {', '.join(conflicts[:10])}"
            f"{' ...' if len(conflicts) > 10 else ''}; --replace overwrites them with the file's"
        )
    keys = "none in file" if not backup.keys else "differ (kept)" if differing else \
        "restored" if missing else "same"
    report = ImportReport(standing, keys)
    if not dry_run:
        if missing:
            await keyring.restore_record(registry.redis, registry.settings, missing)
        changed = [client for client in backup.clients if standing[client.client_id] != "same"]
        if changed:
            await registry.restore(changed)
    if ids is not None and backup.anonymised_ids:
        mode: RestoreMode = "dry-run" if dry_run else "replace" if replace else "keep"
        with _progress(backup.anonymised_ids, "importing anonymised ids") as bar:
            for consumer_type, batch in backup.anonymised_batches():
                new, same, differing = await ids.restore(consumer_type, batch, mode)
                report.anonymised_ids["new"] += new
                report.anonymised_ids["same"] += same
                report.anonymised_ids["differing"] += differing
                bar.update(len(batch))
    return report


async def _key_material(registry: ClientRegistry) -> dict[str, str]:
    return await keyring.raw_record(registry.redis, registry.settings)


def _line(out: IO[str], item: dict[str, Any]) -> None:
    out.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")


def _progress(total: int, label: str) -> tqdm[Any]:
    """A status line on stderr while a terminal watches (none in scripts, cron or tests)."""
    return tqdm(total=total, unit=" ids", unit_scale=True, desc=label, file=sys.stderr, disable=None, leave=False)


def _check_header(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("format") != FORMAT:
        raise BackupError(f"line 1: not an rthub registry backup (no \"format\": \"{FORMAT}\")")
    if item.get("version") != VERSION:
        raise BackupError(f"line 1: backup version {item.get('version')!r}; this rthub reads version {VERSION}")
    for name in ("prefix", "exported_at"):
        if not isinstance(item.get(name), str):
            raise BackupError(f"line 1: the header has no {name}")
    return item


def _check_keys(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise BackupError("keys must be an object of string fields")
    return body


def _check_client(body: Any) -> Client:
    if not isinstance(body, dict) or set(body) != {"client_id", "record"}:
        raise BackupError("a client line holds exactly client_id and record")
    return check_record(body["client_id"], body["record"])


def _check_ids(body: Any) -> int:
    if not isinstance(body, dict) or set(body) != {"type", "ids"} or not isinstance(body["ids"], dict):
        raise BackupError("an anonymised_ids line holds exactly type and ids (an object)")
    if body["type"] not in CONSUMER_TYPES:
        raise BackupError(f"unknown consumer type {body['type']!r}")
    for user, anonymised in body["ids"].items():
        if not user or not isinstance(anonymised, str) or not _is_uuid(anonymised):
            raise BackupError(f"user {user!r}: the anonymised id must be a UUID")
    return len(body["ids"])


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
