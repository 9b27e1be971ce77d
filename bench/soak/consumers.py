"""The soak's WebSocket consumers (the SDK's `Stream`, reconnecting across hubs through the front proxy)
and its admin (the admin REST API of whichever hub answers).

Every frame a socket receives is recorded with its connection, before the SDK drops what it already
has, so the checker sees the order on each connection as the hub sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from rthub_client import Backoff, Forbidden, Stream
from rthub_client.errors import RthubError


@dataclass
class Frame:
    connection: int
    cursor: str
    t: float


@dataclass
class Delivery:
    cursor: str
    t: float
    stamps: list[str]  # the xAPI `timestamp` / Caliper `eventTime` values in the frame's data


@dataclass
class WsRecord:
    """What one SDK stream of one client saw."""

    name: str
    frames: list[Frame] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    gaps: list[tuple[str, str]] = field(default_factory=list)
    connections: int = 0
    forbidden: int = 0
    errors: list[str] = field(default_factory=list)
    welcomed_at: float = 0.0


@dataclass
class Recorded:
    """A finished stream reduced to what it recorded (a live `WsConsumer` holds tasks and sockets)."""

    record: WsRecord


class _Tap:
    """A socket whose `recv` records each event frame before the SDK reads it."""

    def __init__(self, ws: Any, record: WsRecord, connection: int) -> None:
        self._ws, self._record, self._connection = ws, record, connection

    async def recv(self) -> Any:
        raw = await self._ws.recv()
        with contextlib.suppress(ValueError, TypeError):
            frame = json.loads(raw)
            if isinstance(frame, dict) and frame.get("type") == "event":
                self._record.frames.append(Frame(self._connection, str(frame.get("cursor")), time.time()))
        return raw


class RecordingStream(Stream):
    def __init__(self, *args: Any, record: WsRecord, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record = record
        self._connection = 0

    async def _greet(self, ws: Any) -> None:
        await super()._greet(ws)
        self.record.connections += 1
        self._connection = self.record.connections
        if not self.record.welcomed_at:
            self.record.welcomed_at = time.time()

    async def _next_event(self, ws: Any) -> Any:
        return await super()._next_event(_Tap(ws, self.record, self._connection))


def _stamps(data: Any) -> list[str]:
    items = data if isinstance(data, list) else [data]
    return [str(item.get("timestamp") or item.get("eventTime")) for item in items if isinstance(item, dict)]


class WsConsumer:
    """One SDK stream of a client, kept running: a 4403 after a grant change, or a secret rotation,
    starts a new `Stream` from the last cursor; a 4403 after revocation ends it."""

    def __init__(self, url: str, name: str, client_id: str, secret: str, sdk_filter: Any) -> None:
        self.url, self.client_id, self.secret, self.filter = url, client_id, secret, sdk_filter
        self.record = WsRecord(name)
        self.cursor: str | None = None
        self.revoked = False
        self._task: asyncio.Task[None] | None = None
        self.first_connection = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ws-{self.record.name}")

    async def restart(self, secret: str | None = None) -> None:
        await self.stop()
        if secret is not None:
            self.secret = secret
        self.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self.revoked:
            stream = RecordingStream(self.url, self.client_id, self.secret, filter=self.filter,
                                     resume_from=self.cursor, record=self.record,
                                     backoff=Backoff(base=0.1, cap=2.0),
                                     on_gap=lambda gap: self.record.gaps.append((gap.since, gap.oldest)))
            try:
                async for event in stream:
                    if not self.first_connection.is_set():
                        self.first_connection.set()
                    self.record.deliveries.append(Delivery(event.cursor, time.time(), _stamps(event.data)))
            except Forbidden:
                self.record.forbidden += 1
            except RthubError as exc:
                self.record.errors.append(repr(exc))
            finally:
                self.cursor = stream.cursor  # its last event's, or where its first welcome said it started
                with contextlib.suppress(Exception):
                    await stream.aclose()
            await asyncio.sleep(0.5)


class Admin:
    """The admin API through whichever hub answers; retried across hub and Redis faults."""

    def __init__(self, hubs: list[str], client_id: str, secret: str) -> None:
        self.hubs, self.client_id, self.secret = hubs, client_id, secret
        self.http = httpx.AsyncClient(timeout=10)
        self._token = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, deadline: float = 120, **kwargs: Any) -> httpx.Response:
        end = time.monotonic() + deadline
        attempt = 0
        last = ""
        while True:
            base = self.hubs[attempt % len(self.hubs)]
            attempt += 1
            try:
                if not self._token:
                    self._token = await self._fetch_token(base)
                response = await self.http.request(method, f"{base}/admin/api{path}",
                                                   headers={"authorization": f"Bearer {self._token}"}, **kwargs)
                if response.status_code == 401:
                    self._token = ""
                elif response.status_code < 500:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            except (httpx.HTTPError, RuntimeError) as exc:
                last = repr(exc)
            if time.monotonic() > end:
                raise RuntimeError(f"admin {method} {path} did not succeed within {deadline} s: {last}")
            await asyncio.sleep(0.5)

    async def _fetch_token(self, base: str) -> str:
        response = await self.http.post(f"{base}/oauth/token", data={"grant_type": "client_credentials",
                                                                      "scope": "admin"},
                                        auth=(self.client_id, self.secret))
        if response.status_code != 200:
            raise RuntimeError(f"admin token: {response.status_code} {response.text[:200]}")
        return str(response.json()["access_token"])
