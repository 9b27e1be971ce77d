"""`WS /v1/events`: authenticate, greet, then send frames from the connection's queue.

Frames from the client (`subscribe`) are read concurrently. Close codes: 4401 bad token, 4403 no
right (or rights changed), 4008 slow consumer, 1012 hub shutting down, 1003 binary frame,
1008 malformed or too many client frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from auth.identity import Authenticator, AuthError
from hub.control.presence import Presence
from hub.delivery.websocket.connection import Connection
from hub.fanout import Fanout
from hub.ingest import Broker, cursor_key
from hub.metrics import Metrics
from rthub_lms.grants import GrantError, compile_grant, narrow, validate_filter

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
# Client frames allowed per second, averaged over a burst of this many.
CLIENT_FRAME_RATE = 10.0
CLIENT_FRAME_BURST = 20
# How long a new connection waits for an optional first `subscribe` before releasing live events.
SUBSCRIBE_WINDOW = 1.0


class ProtocolViolation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def bearer_token(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return websocket.query_params.get("access_token", "")


class EventsEndpoint:
    def __init__(
        self,
        fanout: Fanout,
        broker: Broker,
        authenticator: Authenticator,
        queue_size: int,
        presence: Presence | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.presence = presence
        self.metrics = metrics
        self.fanout = fanout
        self.broker = broker
        self.authenticator = authenticator
        self.queue_size = queue_size

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        try:
            identity = await self.authenticator.authenticate(bearer_token(websocket))
        except AuthError as exc:
            await websocket.close(exc.close_code, exc.reason[:120])
            return
        conn = Connection(identity, compile_grant(identity.grant), queue_size=self.queue_size)
        await websocket.send_text(
            orjson.dumps(
                {"type": "welcome", "client_id": identity.client_id, "translator": identity.translator}
            ).decode()
        )
        sender = asyncio.create_task(self._send_frames(websocket, conn))
        conn.on_close = sender.cancel
        self.fanout.add(conn)
        if self.presence is not None:
            await self.presence.connected(identity.client_id, identity.delivery == "websocket+webhook")
        receiver = asyncio.create_task(self._read_frames(websocket, conn))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.fanout.remove(conn)
            if self.presence is not None:
                await self.presence.disconnected(identity.client_id, conn.last_cursor)
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        if conn.close_code is not None and websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(conn.close_code, conn.close_reason[:120])

    async def _send_frames(self, websocket: WebSocket, conn: Connection) -> None:
        while True:
            frame = await conn.queue.get()
            await websocket.send_text(frame.text)
            if frame.order is not None:
                conn.last_cursor = frame.cursor
                if self.metrics is not None:
                    self.metrics.frame_sent(frame.order[0])

    async def _read_frames(self, websocket: WebSocket, conn: Connection) -> None:
        try:
            await self._read_until_violation(websocket, conn)
        except ProtocolViolation as violation:
            conn.close(violation.code, violation.reason)

    async def _read_until_violation(self, websocket: WebSocket, conn: Connection) -> None:
        allowance = float(CLIENT_FRAME_BURST)
        last = time.monotonic()
        while True:
            if conn.holding:
                try:
                    message = await asyncio.wait_for(websocket.receive(), SUBSCRIBE_WINDOW)
                except TimeoutError:
                    conn.release_live()
                    continue
            else:
                message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            now = time.monotonic()
            allowance = min(CLIENT_FRAME_BURST, allowance + (now - last) * CLIENT_FRAME_RATE)
            last = now
            if allowance < 1:
                raise ProtocolViolation(CLOSE_POLICY_VIOLATION, "too many client frames")
            allowance -= 1
            if message.get("text") is None:
                raise ProtocolViolation(CLOSE_UNSUPPORTED_DATA, "binary frames are not accepted")
            await self._handle(conn, message["text"])

    async def _handle(self, conn: Connection, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation(CLOSE_POLICY_VIOLATION, "frame is not JSON") from exc
        if not isinstance(frame, dict) or frame.get("type") != "subscribe":
            raise ProtocolViolation(CLOSE_POLICY_VIOLATION, "expected a `subscribe` frame")
        try:
            filter_rules = validate_filter(frame.get("filter"))
        except GrantError as exc:
            raise ProtocolViolation(CLOSE_POLICY_VIOLATION, f"bad filter: {exc}") from exc
        resume_from = frame.get("resume_from")
        if resume_from is not None:
            if not conn.holding:
                raise ProtocolViolation(
                    CLOSE_POLICY_VIOLATION, "resume_from is only accepted in the first frame, right after welcome"
                )
            try:
                cursor_key(resume_from)
            except (ValueError, AttributeError, TypeError) as exc:
                raise ProtocolViolation(CLOSE_POLICY_VIOLATION, "bad resume_from cursor") from exc
        conn.matcher = narrow(conn.grant, filter_rules)
        self.fanout.update(conn)
        if resume_from is not None:
            await self.fanout.resume(conn, self.broker, resume_from)
        elif conn.holding:
            conn.release_live()
