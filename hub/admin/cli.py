"""`rthub clients ...` and `rthub admin ...`: manage OAuth clients straight in Redis; back the registry up
and restore it (`hub/admin/backup.py`).

`register(subparsers)` plugs these into the main `rthub` parser (`hub/cli.py`).
Every handler returns an exit code: 0 done, 1 not found, 2 bad input or an import refused (message on
stderr), 3 Redis unreachable (a closed standard output is not that: `rthub` ends with 141, `hub/cli.py`).
A grant that probably misses events is written with a warning on stderr, or, with `--strict`, refused
(exit 2, nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from auth.clients import (
    ACTORS,
    CONSUMER_TYPES,
    DELIVERIES,
    SCOPES,
    TRANSLATORS,
    Client,
    ValidationError,
    grant_warnings,
)
from auth.keyring import KeyMismatch
from auth.keys import rotate_signing_key
from auth.registry import ClientNotFound, ClientRegistry
from hub.admin.backup import BackupError, ImportRefused, export, import_backup, open_file, output_file, read_backup
from hub.anonymise import RedisIdStore
from hub.config import ConfigError, Settings
from hub.control.presence import live_connections
from hub.redis import client as redis_client

ADMIN_NAME = "admin"


async def bootstrap_admin(registry: ClientRegistry, name: str = ADMIN_NAME) -> tuple[str, str]:
    """Issue an admin client (scope `admin`); returns (client_id, client_secret)."""
    client, secret = await registry.create(name=name, type="other", translator="xapi", scopes=["admin"])
    return client.client_id, secret


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `clients` and `admin` command groups to an argparse subparsers object."""
    clients = subparsers.add_parser("clients", help="manage OAuth clients (consumers)")
    actions = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")

    create = _leaf(actions, "create", "issue a client; prints its id and secret (shown once)", _create)
    create.add_argument("--name", required=True)
    create.add_argument("--type", required=True, choices=CONSUMER_TYPES, dest="consumer_type")
    create.add_argument("--translator", required=True, choices=TRANSLATORS)
    _shared_fields(create)

    _leaf(actions, "list", "list clients with live connection counts", _list)
    show = _leaf(actions, "show", "show one client", _show)
    show.add_argument("client_id", metavar="ID")

    update = _leaf(actions, "update", "change a client's fields", _update)
    update.add_argument("client_id", metavar="ID")
    update.add_argument("--name")
    update.add_argument("--type", choices=CONSUMER_TYPES, dest="consumer_type")
    update.add_argument("--translator", choices=TRANSLATORS)
    update.add_argument("--clear-grant", action="store_true", help="remove every grant rule")
    update.add_argument("--clear-endpoint-headers", action="store_true", help="remove every extra endpoint header")
    _shared_fields(update)

    rotate = _leaf(actions, "rotate-secret", "new secret; the old one stays valid for the grace period", _rotate)
    rotate.add_argument("client_id", metavar="ID")
    rotate_endpoint = _leaf(
        actions, "rotate-endpoint-credential",
        "new LRS / Caliper endpoint password or token (stored encrypted, never printed); resumes a paused client",
        _rotate_endpoint,
    )
    rotate_endpoint.add_argument("client_id", metavar="ID")
    _endpoint_credentials(rotate_endpoint)
    revoke = _leaf(actions, "revoke", "revoke a client; its live sockets are closed", _revoke)
    revoke.add_argument("client_id", metavar="ID")

    admin = subparsers.add_parser("admin", help="administration")
    admin_actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    bootstrap = _leaf(admin_actions, "bootstrap", "create an admin client (scope admin)", _bootstrap)
    bootstrap.add_argument("--name", default=ADMIN_NAME)

    backup = _leaf(
        admin_actions, "export",
        "back up the client registry and the anonymised ids to FILE (never a clear secret; mode 0600)", _export,
    )
    backup.add_argument("file", metavar="FILE", help="the backup to write, atomically; - for stdout")
    _no_anonymised_ids(backup, "leave the anonymised ids (personal data: LMS user id -> UUID) out")
    restore = _leaf(
        admin_actions, "import",
        "restore clients and anonymised ids from a backup FILE (after a Redis loss, or to move Redis)", _import,
    )
    restore.add_argument("file", metavar="FILE", help="a file written by rthub admin export; - for stdin")
    restore.add_argument("--replace", action="store_true",
                         help="overwrite clients (and anonymised ids) that differ from the file's")
    restore.add_argument("--force", action="store_true",
                         help="import although Redis records other key fingerprints than the file")
    restore.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    _no_anonymised_ids(restore, "do not import the file's anonymised ids")

    rotate_key = admin_actions.add_parser(
        "rotate-signing-key",
        help="new token signing key for every hub; the old public key stays in the JWKS",
        description="Generate a new ES256 signing key in the data directory and publish it in the registry: "
        "every hub serves it, signs with it, and keeps verifying tokens signed with the old one.",
    )
    rotate_key.add_argument("--redis-url", help="Redis URL (default: RTHUB_REDIS_URL)")
    rotate_key.add_argument("--redis-prefix", help="key prefix (default: RTHUB_REDIS_PREFIX or rthub:)")
    rotate_key.add_argument("--signing-key-file", help="absolute path (default: RTHUB_SIGNING_KEY_FILE, "
                            "else signing-key.pem in RTHUB_DATA_DIR)")
    rotate_key.add_argument("--json", action="store_true")
    rotate_key.set_defaults(handler=_rotate_signing_key)


def _leaf(
    actions: Any,
    name: str,
    help_text: str,
    run: Callable[[ClientRegistry, argparse.Namespace], Awaitable[int]],
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--redis-url", help="Redis URL (default: RTHUB_REDIS_URL)")
    parser.add_argument("--redis-prefix", help="key prefix (default: RTHUB_REDIS_PREFIX or rthub:)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    parser.set_defaults(handler=lambda args: _run(run, args))
    return parser


def _no_anonymised_ids(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--no-anonymised-ids", action="store_false", dest="anonymised_ids", help=help_text)


def _shared_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grant", action="append", metavar="JSON", help="one grant rule as JSON; repeat for more")
    parser.add_argument(
        "--strict", action="store_true",
        help="refuse (exit 2, nothing written) a grant that draws warnings, e.g. event_types matching no known event",
    )
    parser.add_argument("--delivery", choices=DELIVERIES)
    parser.add_argument(
        "--actor", choices=ACTORS,
        help="anonymous (default): rthub's UUID per learner and consumer type; lms-external-id: the LMS's own "
             "ExternalId of the translator's type (xapi, caliper), as event-routing-backends sends it",
    )
    parser.add_argument("--webhook-url")
    parser.add_argument("--endpoint-url", help="LRS xAPI endpoint (POSTs go to {URL}statements) or Caliper endpoint")
    _endpoint_credentials(parser)
    parser.add_argument(
        "--endpoint-header", action="append", metavar='"NAME: VALUE"', dest="endpoint_headers",
        help="extra header on every POST to the LRS / Caliper endpoint (stored encrypted, never printed); repeat "
             "for more; replaces the headers set before",
    )
    parser.add_argument("--batch-size", type=int, dest="batch_max", help="events per request (default 1)")
    parser.add_argument("--batch-linger", type=float, dest="batch_wait", help="seconds to wait for a batch to fill")
    parser.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        dest="scopes",
        help="repeat for more (default events:read)",
    )


def _endpoint_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-username", help="HTTP Basic user for the LRS")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--endpoint-password", help="HTTP Basic password for the LRS (stored encrypted)")
    secret.add_argument("--endpoint-token", help="bearer token / Caliper API key (stored encrypted)")


def _run(run: Callable[[ClientRegistry, argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)
    except ConfigError as exc:
        return _fail(str(exc))

    async def go() -> int:
        redis = redis_client(settings.redis_url)
        try:
            return await run(ClientRegistry(redis, settings), args)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except ValidationError as exc:
        return _fail(f"invalid {exc.field}: {exc.message}")
    except ClientNotFound as exc:
        print(f"rthub: {exc}", file=sys.stderr)
        return 1
    except KeyMismatch as exc:
        return _fail(f"refused: {exc}")
    except BrokenPipeError:  # stdout's reader left (redis-py wraps its own socket errors): `rthub` says so
        raise
    except (aioredis.ConnectionError, OSError) as exc:
        print(f"rthub: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 3


def _rotate_signing_key(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            redis_url=args.redis_url, redis_prefix=args.redis_prefix, signing_key_file=args.signing_key_file
        )
    except ConfigError as exc:
        return _fail(str(exc))

    async def go() -> str:
        redis = redis_client(settings.redis_url)
        try:
            return await rotate_signing_key(redis, settings)
        finally:
            await redis.aclose()

    try:
        kid = asyncio.run(go())
    except aioredis.ConnectionError as exc:
        print(f"rthub: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 3
    except (KeyMismatch, OSError) as exc:
        return _fail(f"cannot rotate the signing key: {exc}")
    path = settings.signing_key_path
    print(json.dumps({"kid": kid, "signing_key_file": path}) if args.json else f"kid: {kid}")
    return 0


def _fail(message: str) -> int:
    print(f"rthub: {message}", file=sys.stderr)
    return 2


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr, key in (
        ("name", "name"),
        ("consumer_type", "type"),
        ("translator", "translator"),
        ("delivery", "delivery"),
        ("actor", "actor"),
        ("webhook_url", "webhook_url"),
        ("scopes", "scopes"),
        ("endpoint_url", "endpoint_url"),
        ("endpoint_username", "endpoint_username"),
        ("endpoint_password", "endpoint_password"),
        ("endpoint_token", "endpoint_token"),
        ("endpoint_headers", "endpoint_headers"),
        ("batch_max", "webhook_batch_max"),
        ("batch_wait", "webhook_batch_wait"),
    ):
        if getattr(args, attr, None) is not None:
            values[key] = getattr(args, attr)
    if getattr(args, "grant", None):
        values["grant"] = [_rule(text) for text in args.grant]
    if getattr(args, "clear_grant", False):
        if args.grant:
            raise ValidationError("grant", "--clear-grant and --grant together make no sense")
        values["grant"] = []
    if getattr(args, "clear_endpoint_headers", False):
        if args.endpoint_headers:
            raise ValidationError("endpoint_headers", "--clear-endpoint-headers and --endpoint-header together "
                                  "make no sense")
        values["endpoint_headers"] = []
    return values


def _warned(values: dict[str, Any], strict: bool) -> bool:
    """Print the grant's warnings on stderr; True when `--strict` makes them a refusal."""
    warnings = grant_warnings(values)
    for warning in warnings:
        print(f"rthub: warning: {warning}", file=sys.stderr)
    if warnings and strict:
        print("rthub: --strict: nothing written", file=sys.stderr)
    return bool(warnings) and strict


def _rule(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("grant", f"--grant {text!r} is not valid JSON ({exc.msg})") from exc


async def _create(registry: ClientRegistry, args: argparse.Namespace) -> int:
    values = _fields(args)
    if _warned(values, args.strict):
        return 2
    client, secret = await registry.create(**values)
    _print_secret(client, secret, args.json)
    return 0


async def _bootstrap(registry: ClientRegistry, args: argparse.Namespace) -> int:
    client_id, secret = await bootstrap_admin(registry, args.name)
    _print_secret(await registry.require(client_id), secret, args.json)
    return 0


async def _list(registry: ClientRegistry, args: argparse.Namespace) -> int:
    registered = await registry.list_all()
    live = await live_connections(registry.redis, registry.settings, [c.client_id for c in registered])
    clients = [{**c.public(), "live_connections": live.get(c.client_id, 0)} for c in registered]
    if args.json:
        print(json.dumps({"clients": clients}))
        return 0
    if not clients:
        print("no clients")
        return 0
    columns = ("client_id", "name", "type", "translator", "actor", "delivery", "status", "live_connections")
    rows = [[str(c[col]) for col in columns] for c in clients]
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _show(registry: ClientRegistry, args: argparse.Namespace) -> int:
    client = await registry.require(args.client_id)
    live = await live_connections(registry.redis, registry.settings, [client.client_id])
    _print_client({**client.public(), "live_connections": live.get(client.client_id, 0)}, args.json)
    return 0


async def _update(registry: ClientRegistry, args: argparse.Namespace) -> int:
    values = _fields(args)
    if not values:
        raise ValidationError("update", "nothing to change; give at least one field flag")
    if _warned(values, args.strict):
        return 2
    client = await registry.update(args.client_id, **values)
    _print_client(client.public(), args.json)
    return 0


async def _rotate(registry: ClientRegistry, args: argparse.Namespace) -> int:
    client, secret = await registry.rotate_secret(args.client_id)
    _print_secret(client, secret, args.json)
    return 0


async def _rotate_endpoint(registry: ClientRegistry, args: argparse.Namespace) -> int:
    values = {key: value for key, value in _fields(args).items() if value is not None}
    client = await registry.rotate_endpoint_credential(args.client_id, **values)
    _print_client(client.public(), args.json)
    return 0


async def _revoke(registry: ClientRegistry, args: argparse.Namespace) -> int:
    client = await registry.revoke(args.client_id)
    _print_client(client.public(), args.json)
    return 0


async def _export(registry: ClientRegistry, args: argparse.Namespace) -> int:
    if args.json and args.file == "-":
        return _fail("--json prints on stdout, where FILE - writes the backup; give a file name")
    ids = RedisIdStore(registry.redis, registry.settings) if args.anonymised_ids else None
    try:
        with output_file(args.file) as handle:
            written = await export(registry, ids, handle)
    except OSError as exc:
        return _fail(f"cannot write {args.file}: {exc}")
    summary = {**written, "prefix": registry.settings.redis_prefix, "file": args.file}
    if args.json:
        print(json.dumps(summary))
    print(f"exported {written['clients']} clients and {written['anonymised_ids']} anonymised ids "
          f"(prefix {summary['prefix']}) to {args.file}", file=sys.stderr)
    return 0


async def _import(registry: ClientRegistry, args: argparse.Namespace) -> int:
    try:
        handle = open_file(args.file)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    with handle:
        try:
            backup = read_backup(handle)
        except (BackupError, UnicodeDecodeError) as exc:
            return _fail(f"{args.file} cannot be imported: {exc}")
        ids = RedisIdStore(registry.redis, registry.settings) if args.anonymised_ids else None
        try:
            report = await import_backup(
                registry, ids, backup, replace=args.replace, force=args.force, dry_run=args.dry_run
            )
        except ImportRefused as exc:
            return _fail(f"import refused, nothing written: {exc}")
    counts = report.counts()
    if args.json:
        print(json.dumps({
            "dry_run": args.dry_run, "from_prefix": backup.header["prefix"], "clients": report.clients,
            "keys": report.keys, "anonymised_ids": report.anonymised_ids,
        }))
    elif args.dry_run:
        names = {client.client_id: client.name for client in backup.clients}
        for client_id, state in report.clients.items():
            action = {"new": "add", "same": "unchanged", "differs": "replace"}[state]
            print(f"{action}: {client_id} ({names[client_id]})")
    verb = "would import" if args.dry_run else "imported"
    anonymised = report.anonymised_ids
    print(f"{verb} clients: {counts['new']} new, {counts['differs']} replaced, {counts['same']} unchanged; "
          f"anonymised ids: {anonymised['new']} new, {anonymised['same']} unchanged, {anonymised['differing']} "
          f"differing ({'replaced' if args.replace else 'kept'}); key fingerprints: {report.keys} "
          f"(from prefix {backup.header['prefix']}, exported at {backup.header['exported_at']})", file=sys.stderr)
    return 0


def _print_secret(client: Client, secret: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**client.public(), "client_secret": secret}))
        return
    print(f"client_id: {client.client_id}")
    print(f"client_secret: {secret}")
    if client.webhook_secret:
        print(f"webhook_secret: {client.webhook_secret}")
    print("(the client secret is shown only once; store it now)", file=sys.stderr)


def _print_client(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    for key, value in data.items():
        shown = json.dumps(value) if isinstance(value, list | dict) else ("" if value is None else value)
        print(f"{key}: {shown}")

