"""`rthub translate FILE --to xapi|caliper`: tracking-log lines in, one JSON output per line out.

Output is reproducible: the same input gives the same statements and ids on every run. With
`--redis-url` each learner gets the deployment's anonymised id for `--consumer-type` (the store the
hub uses, so offline output matches what the hub sends); without it, a pseudonym derived from the
input's digest and the learner, stable for that input and meaningless without it (a digest of the
user id alone could be reversed by trying every id). `--actor-id` fixes one id for everyone. Bad
lines are reported on stderr with their line number and the reason, and do not stop the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import IO, TextIO

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.clients import CONSUMER_TYPES
from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.redis import client as redis_client
from hub.translate import TRANSLATORS, NoTranslation, TranslationError, TranslationSettings, translate
from rthub_lms.events import MalformedEvent, normalise, user_id

PSEUDONYMS = uuid.UUID("6f1d4f0e-2b7a-5c3e-9d41-8a0b7c6e5f21")

Actors = Callable[[str], Awaitable[str]]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to `parser` (the `rthub translate` subcommand, or its own)."""
    parser.add_argument("file", help="tracking-log file, one JSON event per line (.gz accepted; - for stdin)")
    parser.add_argument("--to", required=True, choices=TRANSLATORS, help="output standard")
    parser.add_argument("--output", "-o", default="-", help="where to write JSON lines (default stdout)")
    parser.add_argument("--actor-id", help="use this anonymised id for every learner")
    parser.add_argument("--redis-url", help="take learners' anonymised ids from this deployment's Redis, as the hub")
    parser.add_argument("--redis-prefix", help="key prefix (default RTHUB_REDIS_PREFIX or rthub:)")
    parser.add_argument("--consumer-type", choices=CONSUMER_TYPES, default="other",
                        help="whose anonymised ids (they differ per consumer type; default other)")
    parser.add_argument("--lms-root-url", help="LMS root URL (default RTHUB_LMS_ROOT_URL)")


def run(args: argparse.Namespace, stderr: TextIO | None = None) -> int:
    """Translate `args.file`; 0 when every line translated or had no mapping, 1 when some were rejected."""
    stderr = stderr or sys.stderr
    settings = Settings.from_env(lms_root_url=args.lms_root_url, redis_prefix=args.redis_prefix)
    try:
        return asyncio.run(_run(args, settings, stderr))
    except RedisError as exc:
        print(f"rthub translate: Redis at {args.redis_url} failed: {exc}", file=stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings, stderr: TextIO) -> int:
    target = TranslationSettings(settings.lms_root_url, settings.transformer_version)
    counts = {"translated": 0, "outputs": 0, "no_translation": 0, "no_learner": 0, "rejected": 0}
    with _spooled(args.file) as source, _open_out(args.output) as out:
        redis = redis_client(args.redis_url) if args.redis_url else None
        try:
            actors = _actors(args, settings, redis, source)
            for number, line in enumerate(_lines(source), start=1):
                if not line.strip():
                    continue
                try:
                    raw = _parse(line)
                except ValueError as exc:
                    counts["rejected"] += 1
                    print(f"line {number}: not JSON ({exc})", file=stderr)
                    continue
                try:
                    event = normalise(raw)
                    who = user_id(event) if redis is not None else user_id(event) or _username(event)
                    if who is None and redis is not None and not args.actor_id:
                        counts["no_learner"] += 1  # the hub sends nothing about an event naming no user id
                        continue
                    results = translate(event, args.to, actor_id=await actors(who or ""), settings=target)
                except NoTranslation:
                    counts["no_translation"] += 1
                    continue
                except (MalformedEvent, TranslationError) as exc:
                    counts["rejected"] += 1
                    print(f"line {number}: {exc}", file=stderr)
                    continue
                counts["translated"] += 1
                counts["outputs"] += len(results)
                out.write(b"".join(orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE) for result in results))
        finally:
            if redis is not None:
                await redis.aclose()
    print(" ".join(f"{key}={value}" for key, value in counts.items()), file=stderr)
    return 1 if counts["rejected"] else 0


def _actors(args: argparse.Namespace, settings: Settings, redis: aioredis.Redis | None, source: IO[bytes]) -> Actors:
    """How a learner becomes an actor id: fixed, the deployment's store, or a pseudonym of this input."""
    if args.actor_id:
        fixed = args.actor_id

        async def same(_: str) -> str:
            return fixed

        return same
    if redis is not None:
        anonymiser = Anonymiser(RedisIdStore(redis, settings))
        return lambda who: anonymiser.actor_id(args.consumer_type, who)
    digest = _digest(source)

    async def pseudonym(who: str) -> str:
        return str(uuid.uuid5(PSEUDONYMS, f"{digest}|{args.consumer_type}|{who}"))

    return pseudonym


def _digest(source: IO[bytes]) -> str:
    """SHA-256 of the input as stored (compressed or not), then rewound for reading."""
    hashed = hashlib.sha256()
    for block in iter(lambda: source.read(1 << 20), b""):
        hashed.update(block)
    source.seek(0)
    return hashed.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rthub translate", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


def _parse(line: bytes) -> object:
    """orjson (several times faster); a line it refuses is read by `json` as before (NaN, integers
    beyond 64 bits, lone surrogates), so the same lines are accepted with the same values."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _username(event: dict) -> str | None:
    name = event["context"].get("username")
    return name if isinstance(name, str) and name else None


@contextmanager
def _spooled(path: str) -> Iterator[IO[bytes]]:
    """The input as a seekable binary file: the file itself, or standard input copied aside."""
    if path != "-":
        with open(path, "rb") as stream:
            yield stream
        return
    with tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(sys.stdin.buffer, copy)
        copy.seek(0)
        yield copy


def _lines(source: IO[bytes]) -> Iterator[bytes]:
    """Raw lines (JSON is parsed from UTF-8 bytes: a line that is not UTF-8 is a line that is not JSON)."""
    gzipped = source.read(2) == b"\x1f\x8b"
    source.seek(0)
    yield from gzip.GzipFile(fileobj=source) if gzipped else source


@contextmanager
def _open_out(path: str) -> Iterator[IO[bytes]]:
    """Where the JSON lines go, as bytes (orjson writes UTF-8)."""
    if path == "-":
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as stream:
        yield stream
