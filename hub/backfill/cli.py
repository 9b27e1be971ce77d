"""`rthub backfill --client ID SOURCE…`: the command line, its report and its exit statuses.

0: done (everything read was delivered, or the dry run's report printed); 1: delivery stopped (the
endpoint refused or kept failing; rerun to resume); 2: refused (unknown, revoked or WebSocket-only
client, unreadable source, another run, an unfinished job with other arguments); 3: Redis failed;
4: done, but some events were not delivered: the endpoint refused them for good (a 400 naming them:
counted and their first reasons printed, not sent again), or their learners have no external id
mirrored for an `lms-external-id` client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from redis.exceptions import RedisError

from hub.backfill.deliver import DeliveryStopped
from hub.backfill.job import Options, Refused, Result, run
from hub.backfill.prepare import NO_EXTERNAL_ID, OUTCOMES, Tally, parse_time
from hub.config import Settings
from hub.redis import client as redis_client


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "backfill", help="send history (tracking logs, local or in an object store) to one client only",
        description="Read tracking logs and deliver what one client's grant allows to that client alone, "
        "translated and anonymised as live, on a queue of its own; resumable after any interruption.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="a file, directory or glob (plain or gzip), or an object-store URL such as s3://bucket/prefix")
    parser.add_argument("--client", required=True, dest="client_id", help="the client to backfill (its id)")
    parser.add_argument("--since", type=_time, help="only events at or after this time (ISO 8601; UTC if no zone)")
    parser.add_argument("--until", type=_time, help="only events before this time (ISO 8601; UTC if no zone)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and translate, send nothing; print counts per event name with reasons")
    parser.add_argument("--rate", type=_positive(float), help="queue at most this many events per second")
    parser.add_argument("--batch-size", type=_positive(int),
                        help="events per request to the client (default: the client's batch size; at most 1000)")
    parser.add_argument("--restart", action="store_true",
                        help="drop the client's unfinished backfill (checkpoint and queue) and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary line")
    parser.add_argument("--redis-url", help="Redis URL (env RTHUB_REDIS_URL)")
    parser.add_argument("--redis-prefix", help="Redis key prefix (env RTHUB_REDIS_PREFIX, default rthub:)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)
    options = Options(
        client_id=args.client_id, sources=args.sources, since=args.since, until=args.until, dry_run=args.dry_run,
        rate=args.rate, batch_size=args.batch_size, restart=args.restart,
        progress=not args.quiet and not args.dry_run and err.isatty(),
    )
    try:
        result = asyncio.run(_run(options, settings))
    except Refused as exc:
        print(f"rthub backfill: {exc}", file=err)
        return 2
    except DeliveryStopped as exc:
        print(f"rthub backfill: delivery stopped: {exc}. The job is kept: rerun the same command to resume.",
              file=err)
        return 1
    except (RedisError, OSError) as exc:
        print(f"rthub backfill: Redis at {settings.redis_url} failed: {exc}. Rerun the same command to resume.",
              file=err)
        return 3
    if options.dry_run:
        out.write(report(result.tally))
    print(summary(options, result), file=err)
    unnamed = sum(n for (_, _, reason), n in result.tally.counts.items() if reason == NO_EXTERNAL_ID)
    if unnamed:
        print(f"rthub backfill: {unnamed} events were not sent: their learners have no external id mirrored "
              "(run `python -m rthub_lms.external_ids` in the LMS, then this backfill again with --restart)",
              file=err)
        return 4
    if result.rejected:
        print(f"rthub backfill: the endpoint refused {result.rejected} events for good (their reasons above); "
              "everything else was delivered", file=err)
        return 4
    return 0


async def _run(options: Options, settings: Settings) -> Result:
    redis = redis_client(settings.redis_url)
    try:
        return await run(options, settings, redis)
    finally:
        await redis.aclose()


def summary(options: Options, result: Result) -> str:
    tally = result.tally
    rate = result.events_this_run / result.seconds if result.seconds > 0 else 0.0
    if options.dry_run:
        rate = result.lines / result.seconds if result.seconds > 0 else 0.0
        return (f"dry run for client {options.client_id}: {result.lines} lines from {result.files} files; "
                f"{tally.total('queued')} would be sent, {tally.total('filtered')} filtered out, "
                f"{tally.total('untranslatable')} untranslatable, {tally.total('unreadable')} unreadable "
                f"({result.seconds:.1f}s, {rate:,.0f} lines/s)")
    return (f"backfill of client {options.client_id}: {result.lines} lines from {result.files} files; "
            f"queued {tally.total('queued')}, delivered {result.delivered} ({result.already_stored} stored already, "
            f"{result.rejected} refused); {tally.total('filtered')} filtered out, "
            f"{tally.total('untranslatable')} untranslatable, {tally.total('unreadable')} unreadable "
            f"({result.seconds:.1f}s, {rate:,.0f} events/s)")


def report(tally: Tally) -> str:
    """The dry run's table: per event name, how many would be sent, filtered out, untranslatable (and
    unreadable lines), then each reason with its count."""
    names = sorted({name for (_, name, _) in tally.counts})
    width = max([len("event name"), *(len(name) for name in names)])
    header = f"{'event name':<{width}}  {'granted':>9}  {'filtered':>9}  {'untranslatable':>14}  {'unreadable':>10}"
    lines = [header]
    totals = dict.fromkeys(OUTCOMES, 0)
    for name in names:
        row = {outcome: sum(n for (o, e, _), n in tally.counts.items() if o == outcome and e == name)
               for outcome in OUTCOMES}
        for outcome in OUTCOMES:
            totals[outcome] += row[outcome]
        lines.append(f"{name:<{width}}  {row['queued']:>9}  {row['filtered']:>9}  {row['untranslatable']:>14}  "
                     f"{row['unreadable']:>10}")
    lines.append(f"{'total':<{width}}  {totals['queued']:>9}  {totals['filtered']:>9}  "
                 f"{totals['untranslatable']:>14}  {totals['unreadable']:>10}")
    reasons = sorted(((o, e, r), n) for (o, e, r), n in tally.counts.items() if o != "queued")
    if reasons:
        lines += ["", "reasons:"]
        lines += [f"  {name}: {outcome}, {reason}: {count}" for (outcome, name, reason), count in reasons]
    return "\n".join(lines) + "\n"


def _time(value: str) -> object:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from exc


def _positive(kind: type) -> object:
    def parse(value: str) -> object:
        try:
            number = kind(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {value!r}")
        return number

    return parse
