"""`rthub translate FILE --to xapi|caliper`: tracking-log lines in, one JSON output per line out.

For offline use there is no Redis with the hub's anonymised ids, so each LMS user gets a random UUID
for the run (the same user keeps it for the whole file), unless `--actor-id` fixes one. Bad lines are
reported on stderr with their line number and the reason, and do not stop the run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TextIO

import orjson

from hub.config import Settings
from hub.translate import TRANSLATORS, NoTranslation, TranslationError, TranslationSettings, translate
from rthub_lms.events import MalformedEvent, normalise, user_id


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to `parser` (the `rthub translate` subcommand, or its own)."""
    parser.add_argument("file", help="tracking-log file, one JSON event per line (.gz accepted; - for stdin)")
    parser.add_argument("--to", required=True, choices=TRANSLATORS, help="output standard")
    parser.add_argument("--output", "-o", default="-", help="where to write JSON lines (default stdout)")
    parser.add_argument("--actor-id", help="use this anonymised id for every learner")
    parser.add_argument("--lms-root-url", help="LMS root URL (default RTHUB_LMS_ROOT_URL)")


def run(args: argparse.Namespace, stderr: TextIO | None = None) -> int:
    """Translate `args.file`; 0 when every line translated or had no mapping, 1 when some were rejected."""
    stderr = stderr or sys.stderr
    settings = Settings.from_env(lms_root_url=args.lms_root_url)
    target = TranslationSettings(settings.lms_root_url, settings.transformer_version)
    actors: dict[str, str] = {}
    counts = {"translated": 0, "outputs": 0, "no_translation": 0, "rejected": 0}
    with _open_in(args.file) as lines, _open_out(args.output) as out:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                counts["rejected"] += 1
                print(f"line {number}: not JSON ({exc})", file=stderr)
                continue
            try:
                event = normalise(raw)
                who = user_id(event) or _username(event)
                actor = args.actor_id or actors.setdefault(who or "", str(uuid.uuid4()))
                results = translate(event, args.to, actor_id=actor, settings=target)
            except NoTranslation:
                counts["no_translation"] += 1
                continue
            except (MalformedEvent, TranslationError) as exc:
                counts["rejected"] += 1
                print(f"line {number}: {exc}", file=stderr)
                continue
            counts["translated"] += 1
            counts["outputs"] += len(results)
            for result in results:
                out.write(orjson.dumps(result).decode() + "\n")
    print(" ".join(f"{key}={value}" for key, value in counts.items()), file=stderr)
    return 1 if counts["rejected"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rthub translate", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


def _username(event: dict) -> str | None:
    name = event["context"].get("username")
    return name if isinstance(name, str) and name else None


@contextmanager
def _open_in(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    stream = gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")  # noqa: SIM115
    with stream:
        yield stream


@contextmanager
def _open_out(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as stream:
        yield stream
