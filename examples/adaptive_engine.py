"""An adaptive-learning engine consuming rthub: client-credentials token, WebSocket stream, resume on drop.

    python examples/adaptive_engine.py --url http://127.0.0.1:8000 --client-id cl_... --client-secret ...

(or set RTHUB_CLIENT_ID / RTHUB_CLIENT_SECRET). It prints one line per event and keeps the last cursor,
so after a dropped connection, a slow-consumer close (4008) or a hub restart (1012) it reconnects with
`?resume_from=` that cursor on the upgrade request: the hub starts the catch-up before any live
event, however late the first frame would have arrived. An expired token (4401) is replaced; a
revoked client (4403) stops.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

FORBIDDEN = 4403
UNAUTHENTICATED = 4401


class Revoked(Exception):
    """The hub says this client may no longer stream (close 4403)."""


class TokenSource:
    """Fetches a client-credentials token and reuses it until shortly before it expires."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.token_url = base_url.rstrip("/") + "/oauth/token"
        self.basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.token = ""
        self.expires_at = 0.0

    def _fetch(self) -> tuple[str, float]:
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "events:read"}).encode()
        request = urllib.request.Request(self.token_url, data=body, method="POST")
        request.add_header("Authorization", f"Basic {self.basic}")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            error = json.load(exc)
            raise Revoked(f"token endpoint refused us: {error.get('error')}: {error.get('error_description')}") from exc
        return payload["access_token"], time.time() + payload.get("expires_in", 300)

    async def get(self, fresh: bool = False) -> str:
        if fresh or time.time() > self.expires_at - 60:
            self.token, self.expires_at = await asyncio.to_thread(self._fetch)
        return self.token


def describe(event: dict[str, Any]) -> str:
    """One readable line for an xAPI statement or a Caliper event."""
    data = event.get("data") or {}
    if "verb" in data:
        verb = data["verb"].get("display", {}).get("en-US") or data["verb"].get("id", "")
        actor = data.get("actor", {}).get("account", {}).get("name", "?")
        target = data.get("object", {}).get("id", "?")
        return f"{actor} {verb} {target}"
    if "action" in data:
        actor = data.get("actor", {}).get("id", "?") if isinstance(data.get("actor"), dict) else data.get("actor")
        target = data.get("object", {}).get("id", "?") if isinstance(data.get("object"), dict) else data.get("object")
        return f"{actor} {data['action']} {target}"
    return json.dumps(data)[:120]


async def stream(
    base_url: str,
    client_id: str,
    client_secret: str,
    on_event: Callable[[dict[str, Any]], None],
    subscribe_filter: dict[str, Any] | None = None,
) -> None:
    """Stream forever, reconnecting with backoff; returns only by raising `Revoked`."""
    tokens = TokenSource(base_url, client_id, client_secret)
    events_url = base_url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/events"
    last_cursor: str | None = None
    failures = 0
    fresh_token = False
    while True:
        token = await tokens.get(fresh=fresh_token)
        fresh_token = False
        ws_url = events_url + (f"?resume_from={urllib.parse.quote(last_cursor)}" if last_cursor else "")
        try:
            async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                if subscribe_filter:
                    await ws.send(json.dumps({"type": "subscribe", "filter": subscribe_filter}))
                async for raw in ws:
                    message = json.loads(raw)
                    failures = 0
                    if message.get("type") == "event":
                        last_cursor = message["cursor"]
                        on_event(message)
                    elif message.get("type") == "gap":
                        print(f"! missed events before {message['resume_from']}", file=sys.stderr)
                        last_cursor = message["resume_from"]
                    elif message.get("type") == "welcome":
                        print(f"connected as {message['client_id']} ({message['translator']})", file=sys.stderr)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            if code == FORBIDDEN:
                raise Revoked(f"hub closed the stream: {closed.rcvd.reason if closed.rcvd else ''}") from closed
            fresh_token = code == UNAUTHENTICATED
            print(f"! connection closed ({code}); resuming from {last_cursor}", file=sys.stderr)
        except (OSError, InvalidStatus) as exc:
            print(f"! cannot connect: {exc}", file=sys.stderr)
        failures += 1
        await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0))


def print_event(message: dict[str, Any]) -> None:
    print(f"{message['cursor']}  {message['event_type']:<32} {describe(message)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("RTHUB_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--client-id", default=os.environ.get("RTHUB_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("RTHUB_CLIENT_SECRET"))
    parser.add_argument(
        "--filter", type=json.loads, help='narrow the grant, e.g. \'{"event_types": ["problem_check"]}\''
    )
    args = parser.parse_args()
    if not args.client_id or not args.client_secret:
        parser.error("--client-id and --client-secret (or RTHUB_CLIENT_ID / RTHUB_CLIENT_SECRET) are required")
    try:
        asyncio.run(stream(args.url, args.client_id, args.client_secret, print_event, args.filter))
    except Revoked as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
