"""Small helpers around the real `websockets` client for tests."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets


async def connect(url: str, token: str) -> websockets.ClientConnection:
    """Open a stream and consume the `welcome` frame."""
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
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
