"""`Stream`: the hub's event stream as an async iterator that survives drops, restarts and slow reads.

It sends the last cursor (and its filter) both as query parameters of the upgrade request and in the
first `subscribe` frame right after `welcome`, so either way the hub replays what was missed; it
never yields a cursor at or below the last one it yielded, so a replay that overlaps live frames
cannot produce duplicates. Close codes are the hub's (its `auth/closecodes.py` lists each with its
meaning; docs/contract.md): 4401 fetches one fresh token, then raises `Unauthorized`; 4403 raises
`Forbidden`; 1003/1008/1009 raise `ProtocolError`; anything else (4008 slow consumer, 1012 restart,
1013, a dropped connection) reconnects after an exponential backoff with full jitter, reset once a
connection is welcomed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import urllib.parse
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from rthub_client.backoff import Backoff
from rthub_client.cursors import cursor_key, is_cursor
from rthub_client.errors import Forbidden, ProtocolError, Unauthorized
from rthub_client.tokens import TokenSource, TokenUnavailable

log = logging.getLogger("rthub_client")

# The hub's close codes this SDK acts on: copies of `auth.closecodes.CloseCode` in the hub's repository
# (this distribution cannot import it); tests/client/test_closecodes.py checks them equal.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_ABNORMAL = 1006
PROTOCOL_CLOSES = {1003: "binary frame", 1008: "policy violation", 1009: "frame too big"}
WELCOME_TIMEOUT = 10.0

CursorCallback = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Event:
    """One event frame: `data` is an xAPI statement, a list of statements, or a Caliper event."""

    cursor: str
    event_type: str
    data: Any


@dataclass(frozen=True, slots=True)
class Gap:
    """Events between `since` and `oldest` were trimmed from retention before this client resumed."""

    since: str
    oldest: str


@dataclass
class StreamStats:
    """What the stream went through, for logs and metrics: `closes` counts close codes (1006: lost)."""

    connections: int = 0
    failed_connects: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    duplicates_dropped: int = 0
    gaps: int = 0


class Stream:
    """`async for event in Stream(url, client_id, secret, ...)`: every event once, in order, across reconnects.

    `url` is the hub's base URL (`https://hub.example.com`). `filter` narrows the grant (one rule or
    a list of rules, as in a `subscribe` frame). `resume_from` is the cursor persisted by a previous
    run (checked to be a cursor); without one, the stream starts where the hub's first `welcome` says
    its live stream starts, and resumes from there if it drops before its first event.
    `on_cursor(cursor)` (sync or async) is called once the loop body is done with an event, i.e.
    when the next one is asked for, so persisting there gives at-least-once delivery across
    restarts of the consumer. `on_gap(gap)` is told when retention no longer held everything since
    the cursor.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        filter: list[dict[str, Any]] | dict[str, Any] | None = None,
        resume_from: str | None = None,
        on_cursor: CursorCallback | None = None,
        on_gap: Callable[[Gap], Awaitable[None] | None] | None = None,
        token_url: str | None = None,
        tokens: TokenSource | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/events"
        self.tokens = tokens or TokenSource(token_url or base + "/oauth/token", client_id, client_secret)
        self.filter = filter
        self.cursor = resume_from
        self.on_cursor = on_cursor
        self.on_gap = on_gap
        self.backoff = backoff or Backoff()
        self.stats = StreamStats()
        self.client_id: str | None = None
        self.translator: str | None = None
        if resume_from is not None:
            cursor_key(resume_from)
        self._events: AsyncGenerator[Event, None] | None = None

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Event:
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Close the connection; the stream cannot be iterated again."""
        if self._events is not None:
            await self._events.aclose()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[Event, None]:
        refreshed_after_4401 = False
        while True:
            try:
                token = await self.tokens.get()
            except TokenUnavailable as exc:
                delay = max(self.backoff.next_delay(), exc.retry_after)
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            try:
                async with connect(self._url(), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                    await self._greet(ws)
                    self.backoff.reset()
                    refreshed_after_4401 = False
                    while True:
                        event = await self._next_event(ws)
                        if event is None:
                            continue
                        self.cursor = event.cursor
                        yield event
                        await _call(self.on_cursor, event.cursor)
            except ConnectionClosed as closed:
                frame = closed.rcvd or closed.sent  # `sent` alone: this side gave up (e.g. keepalive timeout)
                code = frame.code if frame else CLOSE_ABNORMAL
                reason = frame.reason if frame else "connection lost"
                self.stats.closes[code] += 1
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                code, reason = CLOSE_ABNORMAL, f"cannot connect: {exc!r}"
                self.stats.failed_connects += 1
            if code == CLOSE_FORBIDDEN:
                raise Forbidden(f"hub closed the stream with 4403: {reason}")
            if code in PROTOCOL_CLOSES:
                raise ProtocolError(f"hub closed the stream with {code} ({PROTOCOL_CLOSES[code]}): {reason}")
            if code == CLOSE_UNAUTHENTICATED:
                if refreshed_after_4401:
                    raise Unauthorized(f"hub refused a freshly issued token (4401): {reason}")
                refreshed_after_4401 = True
                self.tokens.invalidate()
                continue
            delay = self.backoff.next_delay()
            log.info("stream closed (%s %s); resuming from %s in %.2fs", code, reason, self.cursor, delay)
            await asyncio.sleep(delay)

    def _url(self) -> str:
        """The upgrade request carries the cursor and the filter, so a catch-up is narrowed from its first
        frame (the `subscribe` frame repeats both for hubs that read only the frame)."""
        query = {}
        if self.cursor is not None:
            query["resume_from"] = self.cursor
        if self.filter is not None:
            query["filter"] = json.dumps(self.filter, separators=(",", ":"))
        return f"{self.ws_url}?{urllib.parse.urlencode(query)}" if query else self.ws_url

    async def _greet(self, ws: ClientConnection) -> None:
        welcome = _decode(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT))
        if welcome.get("type") != "welcome":
            raise ProtocolError(f"expected a welcome frame, got {welcome.get('type')!r}")
        self.client_id, self.translator = welcome.get("client_id"), welcome.get("translator")
        self.stats.connections += 1
        subscribe: dict[str, Any] = {"type": "subscribe"}
        if self.filter is not None:
            subscribe["filter"] = self.filter
        if self.cursor is not None:
            subscribe["resume_from"] = self.cursor
        with contextlib.suppress(ConnectionClosed):  # already closed: still read what arrived before the close
            await ws.send(json.dumps(subscribe))
        if self.cursor is None and is_cursor(welcome.get("cursor")):
            # Where this socket's live stream starts: resumed from after a drop before the first event.
            self.cursor = welcome["cursor"]

    async def _next_event(self, ws: ClientConnection) -> Event | None:
        """The next frame as a new `Event`; None for a gap notice or a cursor already yielded."""
        frame = _decode(await ws.recv())
        kind = frame.get("type")
        if kind == "gap":
            self.stats.gaps += 1
            gap = Gap(str(frame.get("from")), str(frame.get("resume_from")))
            log.warning("events between %s and %s are no longer retained", gap.since, gap.oldest)
            await _call(self.on_gap, gap)
            return None
        if kind != "event":
            return None
        cursor = str(frame["cursor"])
        if self.cursor is not None and cursor_key(cursor) <= cursor_key(self.cursor):
            self.stats.duplicates_dropped += 1
            return None
        return Event(cursor, str(frame.get("event_type")), frame.get("data"))


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("hub sent a frame that is not JSON") from exc
    if not isinstance(frame, dict):
        raise ProtocolError("hub sent a frame that is not a JSON object")
    return frame


async def _call(callback: Callable[[Any], Awaitable[None] | None] | None, value: Any) -> None:
    if callback is None:
        return
    result = callback(value)
    if inspect.isawaitable(result):
        await result
