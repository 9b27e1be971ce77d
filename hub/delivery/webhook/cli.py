"""`rthub deadletters list|replay`: inspect and re-queue failed webhook deliveries, optionally only
those that failed between two times (`--since`, `--until`: ISO 8601, or unix seconds)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import orjson
from redis.exceptions import RedisError

from hub.config import Settings
from hub.delivery.webhook.deadletters import list_deadletters, replay_deadletters
from hub.redis import client as redis_client

LATEST = 253402300799.0  # 9999-12-31T23:59:59Z


def moment(value: str | float) -> float:
    """A time given as unix seconds or ISO 8601 (UTC when it names no zone), as unix seconds from 0 to
    the year 9999; anything else raises ValueError (which argparse reports)."""
    try:
        seconds = float(value)
    except ValueError:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not 0 <= seconds <= LATEST:  # also refuses NaN
        raise ValueError(f"time out of range: {value!r}")
    return seconds


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)


async def _with_redis(settings: Settings, work):  # type: ignore[no-untyped-def]
    client = redis_client(settings.redis_url)
    try:
        return await work(client)
    finally:
        await client.aclose()


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        records = asyncio.run(
            _with_redis(
                settings, lambda r: list_deadletters(r, settings, args.client, args.limit, args.since, args.until)
            )
        )
    except RedisError as exc:
        print(f"rthub deadletters: Redis at {settings.redis_url} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(records).decode())
        return 0
    if not records:
        print("no dead letters")
        return 0
    for record in records:
        when = datetime.fromtimestamp(record["failed_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(
            f"{record['id']}  {record['client_id']}  cursor={record['cursor']}  {record['event_type']}  "
            f"{when}  attempts={record['attempts']}  {record['reason']}"
        )
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.ids and not args.client and not args.all:
        print("rthub deadletters replay: give dead-letter ids, --client ID, or --all", file=sys.stderr)
        return 2
    try:
        moved = asyncio.run(
            _with_redis(
                settings,
                lambda r: replay_deadletters(r, settings, args.ids or None, args.client, args.since, args.until),
            )
        )
    except RedisError as exc:
        print(f"rthub deadletters: Redis at {settings.redis_url} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps({"replayed": moved}).decode())
    else:
        print(f"replayed {moved} dead letters")
    return 0


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--redis-url", help="Redis URL (env RTHUB_REDIS_URL)")
    sub.add_argument("--redis-prefix", help="Redis key prefix (env RTHUB_REDIS_PREFIX, default rthub:)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--client", help="only this client's dead letters")
    sub.add_argument("--since", type=moment, help="only those that failed at or after this time")
    sub.add_argument("--until", type=moment, help="only those that failed at or before this time")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `deadletters list|replay` to the `rthub` command line."""
    parser = subparsers.add_parser("deadletters", help="inspect and replay failed webhook deliveries")
    commands = parser.add_subparsers(dest="deadletters_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="show dead letters, oldest first")
    _common(listing)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=_list)
    replay = commands.add_parser("replay", help="queue dead letters for delivery again")
    _common(replay)
    replay.add_argument("ids", nargs="*", help="dead-letter ids (from `list`)")
    replay.add_argument("--all", action="store_true", help="every dead letter (of --client, if given)")
    replay.set_defaults(handler=_replay)
