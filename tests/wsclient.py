"""Small helpers around the real `websockets` client for tests."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets


async def connect(url: str, token: str, subscribe: dict[str, Any] | None = None) -> websockets.ClientConnection:
    """Open a stream, consume the `welcome` frame, and send a first `subscribe` frame (as clients should).

    With `subscribe={}` no frame is sent, and live events start only after the subscribe window.
    """
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
    if subscribe is None:
        subscribe = {"type": "subscribe"}
    if subscribe:
        await ws.send(orjson.dumps(subscribe).decode())
    return ws


async def collect(ws: websockets.ClientConnection, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The next `count` frames, or fail after `timeout` seconds."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(frames) < count:
            frames.append(orjson.loads(await ws.recv()))
    return frames


async def quiet(ws: websockets.ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Whatever arrives within `seconds` (for asserting that nothing does)."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frames.append(orjson.loads(await ws.recv()))
    except TimeoutError:
        return frames


class StalledClient:
    """A WebSocket client that stops reading after the handshake, like a consumer that cannot keep up.

    It speaks the protocol through websockets' sans-I/O `ClientProtocol` over a plain socket with a
    small receive buffer (no compression), so the hub really meets a full TCP window. `close_code()`
    reads everything that was buffered and returns the code of the hub's close frame.
    """

    def __init__(self, url: str, port: int, token: str) -> None:
        import socket

        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
        self.sock.connect(("127.0.0.1", port))
        self.protocol = ClientProtocol(parse_uri(url))
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.protocol.send_request(request)
        self._flush()
        while self.protocol.handshake_exc is None and not self.protocol.events_received():
            self.protocol.receive_data(self.sock.recv(65536))
        self.protocol.send_text(b'{"type": "subscribe"}')
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def close_code(self, timeout: float = 30) -> int | None:
        self.sock.settimeout(timeout)
        while self.protocol.close_rcvd is None:
            data = self.sock.recv(1 << 20)
            if not data:
                break
            self.protocol.receive_data(data)
            self.protocol.events_received()
        self.sock.close()
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None
