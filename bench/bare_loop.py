"""The baseline: the least a Python process can do to move live events from Redis to WebSockets.

    python -m bench.bare_loop --redis-url URL --prefix bench: --port P

Redis subscribe -> parse -> pick the sockets of the event's course -> encode once ->
`websockets.broadcast`. No auth (any token), no grants, no translation, no anonymisation, no
per-connection queue. It speaks just enough of the hub's protocol (a `welcome` frame, one
`subscribe` frame with `{"courses": [C]}`) for the harness to drive both the same way.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

from rthub_lms import keys as rkeys

WELCOME = orjson.dumps({"type": "welcome", "client_id": "bare", "translator": "none"}).decode()


async def run(redis_url: str, prefix: str, port: int) -> None:
    by_course: dict[str, set[ServerConnection]] = defaultdict(set)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        courses: list[str] = []
        try:
            async for message in ws:
                courses = (orjson.loads(message).get("filter") or {}).get("courses", [])
                for course in courses:
                    by_course[course].add(ws)
        finally:
            for course in courses:
                by_course[course].discard(ws)

    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(rkeys.live_channel(rkeys.Prefix(prefix)))
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=64 * 1024):
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message["type"] != "message":
                continue
            cursor, _, payload = message["data"].partition(b"\n")
            event = orjson.loads(payload)
            targets = by_course.get(event["context"]["course_id"])
            if targets:
                frame = {"type": "event", "cursor": cursor.decode(), "event_type": event["name"], "data": event}
                broadcast(targets, orjson.dumps(frame).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="bench:")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:  # the same choice uvicorn's `--loop auto` makes for the hub, so the comparison stays fair
        import uvloop
    except ImportError:
        asyncio.run(run(args.redis_url, args.prefix, args.port))
    else:
        uvloop.run(run(args.redis_url, args.prefix, args.port))


if __name__ == "__main__":
    main()
