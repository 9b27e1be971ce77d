"""`WS /v1/events`: authenticate, greet, then let the connection send its frames.

Under `rthub serve` the connection writes straight to the socket's transport (`writer.py`); under
another ASGI server it sends through ASGI. Frames from the client (`subscribe`) are read
concurrently. Close codes and their meanings: `auth.closecodes`.

The `welcome` frame names where the socket's live stream starts (the fan-out's position when the
socket joined it), so a client that drops before its first event can resume from there.

Resuming: a cursor on the upgrade request (`?resume_from=CURSOR`, or a `Last-Event-ID` or
`X-Resume-From` header) starts the catch-up at once, with no timed hold. Without one, live frames
are held for up to `SUBSCRIBE_WINDOW` waiting for a first `subscribe` that may carry `resume_from`;
one arriving later is honoured too, each cursor still sent at most once (`Connection.begin_resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from auth.closecodes import CloseCode
from auth.identity import Authenticator, AuthError
from hub.control.presence import Presence
from hub.delivery.websocket.limits import FilterBudget, FilterTooFrequent, FilterTooLarge, check_filter, filter_cost
from hub.delivery.websocket.writer import EXTENSION
from hub.fanout.dispatch import Fanout
from hub.fanout.frames import WelcomeFrame
from hub.fanout.render import Frame
from hub.fanout.subscriber import Connection
from hub.ingest import BrokerUnavailable, History, cursor_key
from rthub_lms.grants import GrantError, Matcher, compile_grant, narrow, validate_filter, validate_grant

# Client frames allowed per second, averaged over a burst of this many.
CLIENT_FRAME_RATE = 10.0
CLIENT_FRAME_BURST = 20
# How long a new connection without a cursor on its upgrade request waits for an optional first
# `subscribe` before releasing live events.
SUBSCRIBE_WINDOW = 1.0
RESUME_HEADERS = ("last-event-id", "x-resume-from")
RESUME_QUERY = "resume_from"
FILTER_QUERY = "filter"
TOKEN_QUERY = "access_token"

GrantChanges = Callable[[str], Awaitable[list[tuple[str, list[dict[str, Any]]]]]]


class ProtocolViolation(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def bearer_token(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return websocket.query_params.get(TOKEN_QUERY, "")


def upgrade_cursor(websocket: WebSocket) -> str | None:
    """The `resume_from` cursor of the upgrade request (query parameter, else header), or None."""
    value = websocket.query_params.get(RESUME_QUERY)
    for header in RESUME_HEADERS:
        value = value or websocket.headers.get(header)
    return value.strip() if value else None


def upgrade_filter(websocket: WebSocket) -> object:
    """The `filter` of the upgrade request (JSON, as in a `subscribe` frame), or None."""
    value = websocket.query_params.get(FILTER_QUERY)
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return ""  # refused by validation, as a filter that is not rules


def is_cursor(value: object) -> bool:
    try:
        cursor_key(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True


class EventsEndpoint:
    def __init__(
        self,
        fanout: Fanout,
        history: History,
        authenticator: Authenticator,
        queue_size: int,
        presence: Presence | None = None,
        on_sent: Callable[[Sequence[Frame]], None] | None = None,
        max_sockets_per_client: int = 0,
        grant_changes: GrantChanges | None = None,
    ) -> None:
        """`grant_changes(client_id)`: the client's last grant changes (`ClientRegistry.grant_changes`),
        by which a catch-up judges what was published before each one."""
        self.grant_changes = grant_changes
        self.presence = presence
        self.on_sent = on_sent  # told of every write (the app's delivery metrics)
        self.fanout = fanout
        self.history = history
        self.authenticator = authenticator
        self.queue_size = queue_size
        self.max_sockets_per_client = max_sockets_per_client
        self.filter_budget = FilterBudget()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        resume_from = upgrade_cursor(websocket)
        if resume_from is not None and not is_cursor(resume_from):
            await websocket.close(CloseCode.POLICY_VIOLATION, "bad resume_from cursor")
            return
        token = bearer_token(websocket)
        changes_seen = self.fanout.changes_seen
        try:
            identity = await self.authenticator.authenticate(token)
        except AuthError as exc:
            await websocket.close(exc.close_code, exc.reason[:120])
            return
        limit = self.max_sockets_per_client
        if limit and self.fanout.sockets_of(identity.client_id) >= limit:
            reason = f"too many sockets for this client (limit {limit} per hub process)"
            await websocket.close(CloseCode.POLICY_VIOLATION, reason)
            return
        conn = Connection(identity, compile_grant(identity.grant), queue_size=self.queue_size,
                          end_of_tick=self.fanout.end_of_tick)
        raw_filter = upgrade_filter(websocket)
        if raw_filter is not None:  # a filter on the upgrade request narrows a catch-up's first frames too
            try:
                await self._narrow(conn, raw_filter)
            except ProtocolViolation as violation:
                if not self.fanout.sockets_of(identity.client_id):
                    self.filter_budget.forget(identity.client_id)
                await websocket.close(violation.code, violation.reason)
                return
        # Indexed before any further await: from here on a change notice for this client finds it, and
        # the fan-out offers it every entry after the position it has reached now.
        self.fanout.add(conn)
        position = self.fanout.position
        try:
            if self.fanout.changes_seen != changes_seen:
                refusal = await self._recheck(token, conn)
                if refusal is not None:
                    await websocket.close(refusal.close_code, refusal.reason[:120])
                    return
            await self._serve(websocket, conn, resume_from, position)
        finally:
            self.fanout.remove(conn)
            if not self.fanout.sockets_of(identity.client_id):
                self.filter_budget.forget(identity.client_id)

    async def _recheck(self, token: str, conn: Connection) -> AuthError | None:
        """A change notice arrived while this handshake read the registry: judge the client again."""
        try:
            current = await self.authenticator.authenticate(token)
        except AuthError as exc:
            return exc
        if current != conn.identity:
            return AuthError(CloseCode.FORBIDDEN, "client rights changed; reconnect")
        return None

    async def _serve(
        self, websocket: WebSocket, conn: Connection, resume_from: str | None, position: str | None
    ) -> None:
        identity = conn.identity
        expiry = None
        if identity.expires_at is not None:
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, identity.expires_at - time.time()),
                conn.close, CloseCode.UNAUTHENTICATED, "token expired; reconnect with a new token",
            )
        tasks = []
        try:
            # Live in presence before the welcome: a client that publishes once welcomed must not get
            # those events by webhook too (websocket+webhook delivery holds its queue from here).
            if self.presence is not None:
                await self.presence.connected(identity.client_id, identity.delivery == "websocket+webhook")
            welcome: WelcomeFrame = {
                "type": "welcome", "client_id": identity.client_id, "translator": identity.translator
            }
            if position is not None:
                welcome["cursor"] = position
            await websocket.send_text(orjson.dumps(welcome).decode())
            conn.on_sent = self.on_sent
            conn.start(websocket.scope.get("extensions", {}).get(EXTENSION), websocket.send_text)
            if resume_from is not None:
                tasks.append(asyncio.create_task(self._catch_up(conn, resume_from)))
            receiver = asyncio.create_task(self._read_frames(websocket, conn, resume_from))
            tasks.append(receiver)
            conn.on_close = receiver.cancel  # a close request (4008, 4401, 4403, 1012...) ends the session
            if conn.close_code is None:
                await asyncio.wait({receiver})
        finally:
            if expiry is not None:
                expiry.cancel()
            conn.stop()
            self.fanout.remove(conn)
            if self.presence is not None:
                await self.presence.disconnected(identity.client_id, conn.last_cursor)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if conn.close_code is not None and websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(conn.close_code, conn.close_reason[:120])

    async def _catch_up(self, conn: Connection, after: str) -> None:
        try:
            await self.fanout.resume(conn, self.history, after, lambda: self._grants_since(conn, after))
        except (BrokerUnavailable, RedisError, OSError):
            conn.close(CloseCode.TRY_AGAIN_LATER, "event stream unavailable; resume again later")

    async def _grants_since(self, conn: Connection, after: str) -> list[tuple[str, Matcher]]:
        """The client's grants before each change made after `after`, oldest first (a grant that no longer
        compiles, or a malformed cursor, is left out: the current grant alone judges those events)."""
        if self.grant_changes is None:
            return []
        since = cursor_key(after)
        found = []
        for upto, grant in await self.grant_changes(conn.identity.client_id):
            try:
                if cursor_key(upto) > since:
                    found.append((upto, compile_grant(validate_grant(grant))))
            except (ValueError, GrantError):
                continue
        return found

    async def _read_frames(self, websocket: WebSocket, conn: Connection, upgrade_resume: str | None) -> None:
        try:
            await self._read_until_violation(websocket, conn, upgrade_resume)
        except ProtocolViolation as violation:
            conn.close(violation.code, violation.reason)

    async def _read_until_violation(self, websocket: WebSocket, conn: Connection, upgrade_resume: str | None) -> None:
        allowance = float(CLIENT_FRAME_BURST)
        last = time.monotonic()
        window = SUBSCRIBE_WINDOW if upgrade_resume is None else None
        while True:
            if window is not None:
                try:
                    message = await asyncio.wait_for(websocket.receive(), window)
                except TimeoutError:
                    window = None
                    if conn.holding and not conn.resuming:
                        conn.release_live()
                    continue
                window = None
            else:
                message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            now = time.monotonic()
            allowance = min(CLIENT_FRAME_BURST, allowance + (now - last) * CLIENT_FRAME_RATE)
            last = now
            if allowance < 1:
                raise ProtocolViolation(CloseCode.POLICY_VIOLATION, "too many client frames")
            allowance -= 1
            if message.get("text") is None:
                raise ProtocolViolation(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
            await self._handle(conn, message["text"], upgrade_resume)

    async def _narrow(self, conn: Connection, raw: object) -> None:
        """Narrow the connection's grant by a client's filter (`ProtocolViolation` when it is refused)."""
        try:
            wait = self.filter_budget.charge(conn.identity.client_id, filter_cost(raw))
            if wait:
                await asyncio.sleep(wait)
            filter_rules = validate_filter(raw)
            check_filter(filter_rules)
        except GrantError as exc:
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, f"bad filter: {exc}") from exc
        except FilterTooLarge as exc:
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, f"filter too large: {exc}") from exc
        except FilterTooFrequent as exc:
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, str(exc)) from exc
        conn.matcher = narrow(conn.grant, filter_rules)

    async def _handle(self, conn: Connection, text: str, upgrade_resume: str | None) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, "frame is not JSON") from exc
        if not isinstance(frame, dict) or frame.get("type") != "subscribe":
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, "expected a `subscribe` frame")
        resume_from = frame.get("resume_from")
        if resume_from is not None and not is_cursor(resume_from):
            raise ProtocolViolation(CloseCode.POLICY_VIOLATION, "bad resume_from cursor")
        await self._narrow(conn, frame.get("filter"))
        self.fanout.update(conn)
        if resume_from is not None and conn.resuming and upgrade_resume is not None:
            if cursor_key(resume_from) < cursor_key(upgrade_resume):
                raise ProtocolViolation(
                    CloseCode.POLICY_VIOLATION, "resume_from is older than the catch-up from the upgrade request"
                )
        elif resume_from is not None:
            await self._catch_up(conn, resume_from)
        elif conn.holding and not conn.resuming:
            conn.release_live()
