"""The `rthub` command line: serve, publish, backfill, demo, translate, events, clients, dead-letter administration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Sequence

from hub.admin import cli as admin_cli
from hub.backfill import cli as backfill_cli
from hub.config import ConfigError, Settings
from hub.delivery.webhook import cli as webhooks_cli
from hub.doctor import cli as doctor_cli
from hub.eventbus import cli as eventbus_cli
from hub.logs import text_log_config, uvicorn_log_config
from hub.render_stage import render_stage
from hub.translate import catalogue, offline

PIPE_CLOSED = 128 + 13  # the status of a program SIGPIPE stopped, as shells report it


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from hub.app import uvicorn_options

    for name in ("redis_url", "redis_prefix"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"RTHUB_{name.upper()}"] = value
    if args.strict_redis:
        os.environ["RTHUB_STRICT_REDIS"] = "true"
    settings = Settings.from_env()
    if settings.strict_redis:
        refused = _unsafe_redis(settings)
        if refused:
            print(f"rthub serve: {refused}", file=sys.stderr)
            return 2
    config = uvicorn.Config(
        "hub.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=uvicorn_log_config(args.log_level) if args.log_format == "json" else text_log_config(),
        **uvicorn_options(settings),
    )
    refused = _check_keys(settings)
    if refused:
        return refused
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        if args.workers <= 1:
            server.run()
        else:
            # uvicorn binds the shared socket without IPPROTO_TCP, so asyncio leaves TCP_NODELAY off on
            # accepted sockets and Nagle holds small frames for the peer's delayed ACK (~40 ms). Linux
            # copies the option from the listening socket to the sockets it accepts.
            sock = config.bind_socket()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with render_stage(args.log_format, args.log_level):  # per-event work once for all workers
                Multiprocess(config, sockets=[sock]).run()
    if args.workers <= 1 and not server.started:
        print(f"rthub serve: could not start on {args.host}:{args.port}", file=sys.stderr)
        return 3
    return 0


def _unsafe_redis(settings: Settings) -> str:
    """Why `--strict-redis` refuses this Redis (each problem and its fix), or "" when it is safe; checked
    here too so `rthub serve` says it plainly and exits 2, before any worker starts."""
    import asyncio

    from hub.app import check_redis_safety
    from hub.redis import client as redis_client
    from hub.redis_safety import RedisUnsafe, SafetyWatch

    async def check() -> str:
        client = redis_client(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            await check_redis_safety(SafetyWatch(client), strict=True)
        except RedisUnsafe as exc:
            return str(exc)
        finally:
            await client.aclose()
        return ""

    return asyncio.run(check())


def _check_keys(settings: Settings) -> int:
    """The hub's start-up key check (`hub.app.check_keys`, which logs a refusal), once before any worker
    starts, so a first start makes the keys here instead of N workers racing to. 0: go on; else the
    exit status."""
    from redis.exceptions import RedisError

    from auth.keyring import KeyMismatch
    from auth.keys import SigningKeys
    from hub.app import check_keys
    from hub.redis import client as redis_client

    async def check() -> None:
        redis = redis_client(settings.redis_url)
        try:
            await check_keys(redis, settings, SigningKeys(settings, redis))
        finally:
            await redis.aclose()

    try:
        asyncio.run(check())
    except KeyMismatch:
        return 2
    except (RedisError, OSError) as exc:
        print(f"rthub serve: cannot check the keys, Redis at {settings.redis_url} failed: {exc}", file=sys.stderr)
        return 3
    return 0


def _publish(args: argparse.Namespace) -> int:
    import redis

    from hub.logimport import replay
    from rthub_lms.backend import StreamWriter
    from rthub_lms.connect import connect, discover

    settings = Settings.from_env(redis_url=args.redis_url, redis_prefix=args.redis_prefix)
    client = connect(discover(settings.redis_url))
    try:
        report = replay(args.file, StreamWriter(client, settings), progress=not args.quiet)
    except FileNotFoundError:
        print(f"rthub publish: no such file: {args.file}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"rthub publish: Redis at {settings.redis_url} failed: {exc}", file=sys.stderr)
        return 1
    print(f"published {report.published} events, skipped {len(report.bad_lines)} bad lines", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hub.dev import demo

    settings = Settings.from_env(redis_prefix=args.redis_prefix)
    return demo.main(settings, args.port, args.rate, args.duration, args.redis_url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rthub", description="Real-time event hub for Open edX.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def redis_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--redis-url", help="Redis URL (env RTHUB_REDIS_URL)")
        sub.add_argument("--redis-prefix", help="Redis key prefix (env RTHUB_REDIS_PREFIX, default rthub:)")

    serve = commands.add_parser("serve", help="run the hub (uvicorn) against Redis")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--log-format", choices=("json", "text"), default="json", help="default: JSON lines")
    serve.add_argument("--strict-redis", action="store_true",
                       help="refuse to start when Redis can lose rthub's data: eviction, no persistence, replicas "
                       "without min-replicas-to-write (env RTHUB_STRICT_REDIS; default: warn)")
    redis_options(serve)
    serve.set_defaults(handler=_serve)

    publish = commands.add_parser("publish", help="replay a tracking log (JSON lines, .gz ok) into Redis")
    publish.add_argument("file", help="tracking log path, or - for standard input")
    publish.add_argument("--quiet", action="store_true", help="no progress bar")
    redis_options(publish)
    publish.set_defaults(handler=_publish)

    demo = commands.add_parser("demo", help="run hub + broker + simulated LMS + example consumer")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--rate", type=float, default=4.0, help="simulated events per second")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    redis_options(demo)
    demo.set_defaults(handler=_demo)

    admin_cli.register(commands)
    webhooks_cli.register(commands)
    eventbus_cli.register(commands)
    doctor_cli.register(commands)
    backfill_cli.register(commands)

    events = commands.add_parser(
        "events", help="list the event names the translators know, by family, with their xAPI verb and Caliper action"
    )
    catalogue.configure(events)
    events.set_defaults(handler=catalogue.run)

    translate = commands.add_parser("translate", help="translate tracking-log lines to xAPI or Caliper (offline)")
    offline.configure(translate)
    translate.set_defaults(handler=offline.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("rthub.keys").setLevel(logging.INFO)  # which key file a command used, with its path
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # buffered output meets a reader that left here, not in the interpreter's exit
    except BrokenPipeError:
        return _reader_left()
    except ConfigError as exc:
        print(f"rthub: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


def _reader_left() -> int:
    """Standard output's reader left (`rthub clients list | head -1`): what the command did stays done,
    only the rest of its output has nowhere to go. Exit 141, as SIGPIPE would, without a word: stdout
    goes to /dev/null so the interpreter's last flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
