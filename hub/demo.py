"""`rthub demo`: the whole system on one machine, with nothing to install beyond the package.

Broker: the given Redis URL, else a private redis-server when one is on PATH, else the in-process
broker. Then the hub on uvicorn, a simulated LMS publishing through `RealtimeBackend`, and an example
WebSocket consumer printing what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn
import websockets

from hub.anonymise import MemoryIdStore
from hub.app import create_app
from hub.broker.memory import MemoryBroker
from hub.config import Settings
from hub.devtoken import DevTokenAuthenticator
from hub.embedded import EmbeddedRedis
from hub.events import normalise
from hub.publisher import RealtimeBackend
from hub.simulator import SimulatedLMS

Publish = Callable[[dict[str, Any]], Awaitable[object]]


def say(message: str) -> None:
    print(message, flush=True)


def describe(frame: dict[str, Any]) -> str:
    """One human line per delivered frame: cursor, event, and the standard's verb or action."""
    data = frame.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if isinstance(first, dict) and "verb" in first:
        verb = first["verb"].get("display", {}).get("en-US") or first["verb"].get("id", "")
        actor = first.get("actor", {}).get("account", {}).get("name", "?")
        what = f"xAPI {verb} by {actor[:8]}"
    elif isinstance(first, dict) and "action" in first:
        what = f"Caliper {first.get('type')} {first['action']}"
    else:
        what = "?"
    count = f" (+{len(data) - 1} statements)" if isinstance(data, list) and len(data) > 1 else ""
    return f"  [consumer] {frame['cursor']}  {frame['event_type']:<36} -> {what}{count}"


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


async def run(settings: Settings, port: int, rate: float, duration: float | None, memory: bool) -> None:
    token = secrets.token_urlsafe(16)
    if memory:
        broker = MemoryBroker()
        app = create_app(settings, broker=broker, id_store=MemoryIdStore(),
                         authenticator=DevTokenAuthenticator(token))

        async def publish(event: dict[str, Any]) -> object:
            return await broker.publish(normalise(event))
    else:
        app = create_app(settings, authenticator=DevTokenAuthenticator(token))
        backend = RealtimeBackend(redis_url=settings.redis_url, redis_prefix=settings.redis_prefix)

        async def publish(event: dict[str, Any]) -> object:
            return await asyncio.to_thread(backend.send, event)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            raise SystemExit(f"the hub could not start on port {port}")
        await asyncio.sleep(0.05)
    ws_url = f"ws://127.0.0.1:{port}/v1/events"
    say(f"rthub demo: hub listening on http://127.0.0.1:{port}  (stream: {ws_url})")
    say(f"  development token for this run: {token}")
    say(f"  simulated LMS publishing ~{rate:g} events/s; Ctrl-C to stop")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consume(ws_url, token, stop)), asyncio.create_task(simulate(publish, rate, stop))]
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.should_exit = True
        await serving


def main(settings: Settings, port: int, rate: float, duration: float | None, redis_url: str | None) -> int:
    with contextlib.ExitStack() as stack:
        memory = False
        if redis_url:
            say(f"rthub demo: using Redis at {redis_url}")
            settings = settings.with_overrides(redis_url=redis_url)
        elif EmbeddedRedis.available():
            embedded = stack.enter_context(EmbeddedRedis())
            say(f"rthub demo: started a private redis-server at {embedded.url}")
            settings = settings.with_overrides(redis_url=embedded.url)
        else:
            memory = True
            say("rthub demo: no redis-server on PATH; using the in-process broker")
        try:
            asyncio.run(run(settings, port, rate, duration, memory))
        except KeyboardInterrupt:
            say("rthub demo: stopped")
    sys.stdout.flush()
    return 0
