"""An adaptive-learning engine consuming rthub through the `rthub-client` SDK.

    python examples/adaptive_engine.py --url http://127.0.0.1:8000 --client-id cl_... --client-secret ... \
        [--cursor-file engine.cursor] [--filter '{"event_types": ["problem_check"]}']

(or set RTHUB_URL, RTHUB_CLIENT_ID, RTHUB_CLIENT_SECRET; or `--client-file tutor.json`, the JSON that
`rthub clients create --json > tutor.json` wrote). It prints one line per event and nothing else,
unless something goes wrong (reconnections and gaps, on stderr). The SDK keeps the token fresh and,
after a dropped connection, a slow-consumer close (4008) or a hub restart (1012), reconnects with
backoff and resumes from the last cursor; with `--cursor-file` the cursor also survives a restart of
this program. A revoked client (4403) stops it with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rthub_client import Event, Forbidden, Stream, Unauthorized


def describe(data: Any) -> str:
    """One readable line for an xAPI statement (or list of them) or a Caliper event."""
    if isinstance(data, list):
        return "; ".join(describe(item) for item in data)
    if not isinstance(data, dict):
        return json.dumps(data)[:120]
    if "verb" in data:
        verb = data["verb"].get("display", {}).get("en-US") or data["verb"].get("id", "")
        actor = data.get("actor", {}).get("account", {}).get("name", "?")
        target = data.get("object", {}).get("id", "?")
        return f"{actor} {verb} {target}"
    if "action" in data:
        actor = data["actor"].get("id", "?") if isinstance(data.get("actor"), dict) else data.get("actor")
        target = data["object"].get("id", "?") if isinstance(data.get("object"), dict) else data.get("object")
        return f"{actor} {data['action']} {target}"
    return json.dumps(data)[:120]


class CursorFile:
    """The last handled cursor in a file, replaced atomically so a crash never leaves half a cursor."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> str | None:
        return self.path.read_text().strip() or None if self.path.exists() else None

    def save(self, cursor: str) -> None:
        partial = self.path.with_suffix(self.path.suffix + ".tmp")
        partial.write_text(cursor)
        os.replace(partial, self.path)


def print_event(event: Event) -> None:
    print(f"{event.cursor}  {event.event_type:<32} {describe(event.data)}", flush=True)


async def run(args: argparse.Namespace) -> None:
    cursors = CursorFile(Path(args.cursor_file)) if args.cursor_file else None
    stream = Stream(
        args.url,
        args.client_id,
        args.client_secret,
        filter=args.filter,
        resume_from=cursors.load() if cursors else None,
        on_cursor=cursors.save if cursors else None,
    )
    async with stream:
        async for event in stream:
            print_event(event)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("RTHUB_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--client-id", default=os.environ.get("RTHUB_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("RTHUB_CLIENT_SECRET"))
    parser.add_argument(
        "--client-file", type=Path, help="the JSON `rthub clients create --json` printed (its client id and secret)"
    )
    parser.add_argument("--cursor-file", help="remember the last handled cursor here, and resume from it")
    parser.add_argument(
        "--filter", type=json.loads, help='narrow the grant, e.g. \'{"event_types": ["problem_check"]}\''
    )
    args = parser.parse_args()
    if args.client_file:
        try:
            issued = json.loads(args.client_file.read_text())
            args.client_id, args.client_secret = issued["client_id"], issued["client_secret"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--client-file {args.client_file}: not what `rthub clients create --json` prints ({exc!r})")
    if not args.client_id or not args.client_secret:
        parser.error("--client-file, or --client-id and --client-secret (or RTHUB_CLIENT_ID / RTHUB_CLIENT_SECRET)")
    logging.basicConfig(level=logging.INFO, format="! %(message)s", stream=sys.stderr)
    for chatty in ("httpx", "httpcore"):  # a line per token request: the SDK's own lines say what matters
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except (Forbidden, Unauthorized) as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
