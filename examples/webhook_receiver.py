"""A small rthub webhook receiver: verifies signatures with the `rthub-client` SDK and drops duplicates.

    python examples/webhook_receiver.py --port 9000 --secret whsec_...   (or env WEBHOOK_SECRET)

rthub delivers at least once: after a retry, a takeover by another hub instance, or a socket
handoff, the same event can arrive twice, always with the same `webhook-id`. This receiver keeps
the ids it accepted recently and answers a repeat with 200 without processing it again. A bad or
stale signature gets 401 (rthub retries, then dead-letters). Bodies are one event frame, or
`{"type": "batch", "events": [...]}` when batching is configured for the client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

from rthub_client import InvalidWebhook, verify, webhook_events

REMEMBERED_IDS = 100_000


class SeenIds:
    """The most recent webhook ids, oldest forgotten first."""

    def __init__(self, size: int = REMEMBERED_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def add(self, webhook_id: str) -> bool:
        """True when the id is new (and remember it)."""
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


def make_server(
    secret: str, port: int, handle: Callable[[dict], None], host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """A server that calls `handle(event_frame)` once per distinct, correctly signed event."""
    seen = SeenIds()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                payload = verify(body, self.headers, secret)
            except InvalidWebhook:
                self._reply(401)
                return
            if seen.add(self.headers["webhook-id"]):
                for event in webhook_events(payload):
                    handle(event)
            self._reply(200)

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET"), help="whsec_... (env WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret or WEBHOOK_SECRET is required")

    def show(event: dict) -> None:
        print(json.dumps({"cursor": event.get("cursor"), "event_type": event.get("event_type")}), flush=True)

    server = make_server(args.secret, args.port, show, args.host)
    print(f"receiving webhooks on http://{args.host}:{server.server_address[1]}/", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
