"""`rthub doctor`: print every finding with its fix; exit 1 when something would lose or hold events."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from hub.config import Settings
from hub.doctor import Finding, Severity, diagnose

LABELS = {Severity.OK: "ok  ", Severity.WARN: "WARN", Severity.FAIL: "FAIL"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "doctor", help="check settings, keys, Redis and every endpoint; non-zero when events would be lost or held",
        description="Check this deployment as the hub would run it: settings, key files against the registry, "
                    "Redis eviction and persistence, and every delivering client's endpoint (DNS, TLS, credential).",
    )
    parser.add_argument("--redis-url", help="Redis URL (default: RTHUB_REDIS_URL)")
    parser.add_argument("--redis-prefix", help="key prefix (default: RTHUB_REDIS_PREFIX or rthub:)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)
    findings = asyncio.run(diagnose(settings))
    failed = sum(finding.severity is Severity.FAIL for finding in findings)
    warned = sum(finding.severity is Severity.WARN for finding in findings)
    if args.json:
        print(orjson.dumps({"ok": not failed, "findings": [finding.as_dict() for finding in findings]}).decode())
    else:
        for finding in findings:
            print(_line(finding))
        verdict = f"{failed} problem(s) would lose or hold events" if failed else "nothing would lose or hold events"
        print(f"{verdict}; {warned} warning(s)", file=sys.stderr)
    return 1 if failed else 0


def _line(finding: Finding) -> str:
    line = f"{LABELS[finding.severity]}  {finding.subject}: {finding.message}"
    return f"{line}\n      fix: {finding.fix}" if finding.fix and finding.severity is not Severity.OK else line
