"""Where a backfill reads: local files, directories and globs, or object-store URLs, in a fixed order.

`resolve` turns the command's SOURCE arguments into the list of files a job reads, once, when the job
starts (the checkpoint keeps that list, so a rerun reads exactly the same files even when new ones have
appeared meanwhile). A directory or an object-store prefix gives every file under it, a glob every file
it matches, each sorted by name. Files are read as `rthub publish` reads a log (`hub.logimport`: plain
or gzip, detected by content).

Object stores go through fsspec (`s3://` with s3fs, the `s3` extra; `gs://`, `az://` … with the
matching fsspec package installed): credentials come from the store's own chain (for S3: the
`AWS_*` variables, `~/.aws`, instance and pod roles; `AWS_ENDPOINT_URL` for an S3-compatible store).
Every failure becomes a `SourceError` naming the source and the reason.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from hub.logimport import decompressed

GLOB_CHARACTERS = frozenset("*?[")


class SourceError(Exception):
    """A source cannot be listed or read; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file of a job: a local path or an object-store URL, and its size as stored (None: unknown)."""

    name: str
    size: int | None


def is_url(source: str) -> bool:
    return "://" in source and not os.path.exists(source)


def resolve(sources: list[str]) -> list[SourceFile]:
    """Every file the SOURCE arguments name, in order: each argument's files sorted by name."""
    found: list[SourceFile] = []
    for source in sources:
        files = _remote(source) if is_url(source) else _local(source)
        if not files:
            raise SourceError(f"{source}: no file there")
        found += files
    return found


def _local(source: str) -> list[SourceFile]:
    if os.path.isdir(source):
        names = [os.path.join(top, name) for top, _, files in os.walk(source) for name in files]
    elif os.path.isfile(source):
        names = [source]
    elif GLOB_CHARACTERS & set(source):
        names = [name for name in glob.glob(source, recursive=True) if os.path.isfile(name)]
    else:
        raise SourceError(f"{source}: no such file or directory")
    files = []
    for name in sorted(names):
        path = os.path.abspath(name)
        if not os.access(path, os.R_OK):
            raise SourceError(f"{path}: not readable (permission denied)")
        files.append(SourceFile(path, os.path.getsize(path)))
    return files


def _remote(url: str) -> list[SourceFile]:
    fs, path = _filesystem(url)
    try:
        if GLOB_CHARACTERS & set(path):
            listed = fs.glob(path, detail=True)
        elif fs.isdir(path):
            listed = fs.find(path, detail=True)
        elif fs.isfile(path):
            listed = {path: fs.info(path)}
        else:  # a key prefix that is not a "directory": every object whose key starts with it
            listed = {}
            for name, info in fs.glob(path + "*", detail=True).items():
                listed.update(fs.find(name, detail=True) if info.get("type") == "directory" else {name: info})
    except Exception as exc:  # the store's client raises its own types (botocore's, aiohttp's): reported as they are
        raise SourceError(f"{url}: cannot list: {_reason(exc)}") from exc
    protocol = url.split("://", 1)[0]
    return [
        SourceFile(f"{protocol}://{name}", info.get("size"))
        for name, info in sorted(listed.items())
        if info.get("type") != "directory"
    ]


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise SourceError(f"{url}: object-store sources need fsspec: pip install 'rthub[s3]'") from exc
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:
        protocol = url.split("://", 1)[0]
        hint = " (pip install 'rthub[s3]')" if protocol in ("s3", "s3a") else ""
        raise SourceError(f"{url}: no object-store client for {protocol}://{hint}: {exc}") from exc


@contextmanager
def opened(source: SourceFile) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """(the file as stored, for progress by bytes; its lines' stream, gunzipped when gzip)."""
    try:
        if is_url(source.name):
            fs, path = _filesystem(source.name)
            raw: IO[bytes] = fs.open(path, "rb")
        else:
            raw = open(source.name, "rb")  # noqa: SIM115 (closed below)
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{source.name}: cannot open: {_reason(exc)}") from exc
    try:
        yield raw, decompressed(raw)
    finally:
        raw.close()


def _reason(exc: BaseException) -> str:
    """What went wrong, in the words of the error (credentials refused, no such bucket, …)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        return f"access refused, check the credentials: {text}"
    if "Unable to locate credentials" in text or type(exc).__name__ == "NoCredentialsError":
        return f"no credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role): {text}"
    return text
