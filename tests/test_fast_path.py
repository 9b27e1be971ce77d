"""Issue 17: the fan-out's fast path writes frames straight to the transport, and clients cannot tell.

A real uvicorn server with `FrameWriterProtocol` and real `websockets` clients, with and without
permessage-deflate: frames of every length class (7-bit, 16-bit and 64-bit lengths, non-ASCII)
written in one batch arrive whole and in order. Through a real hub, a plain client (shared wire
bytes) and a compressing client get the same events as a client of the ASGI path would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import uvicorn
import websockets

from hub.delivery.websocket.connection import Frame
from hub.delivery.websocket.server import EXTENSION, UVICORN_WS, TransportWriter
from hub.dev.embedded import free_port
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import RealtimeBackend
from tests.hubproc import HubProcess
from tests.wsclient import collect

TEXTS = ["short", "é" * 100, "x" * 200, "y" * 70_000, '{"type": "event", "data": "ünïcødé ✓"}']


async def writer_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Accept, wait for the client's first frame, write every text in one batch, then close."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    writer = scope["extensions"].get(EXTENSION)
    await receive()
    if not isinstance(writer, TransportWriter) or not writer.ready:
        await send({"type": "websocket.close", "code": 1011, "reason": "no frame writer"})
        return
    writer.write([Frame(f"{index}-0", text) for index, text in enumerate(TEXTS, start=1)])
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def writer_server() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(writer_app, host="127.0.0.1", port=port, log_level="warning",
                                           ws=UVICORN_WS, ws_max_size=2**20))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"ws://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(5)


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_a_batch_written_to_the_transport_arrives_whole_and_in_order(writer_server: str, compression) -> None:
    async def scenario() -> tuple[list[str], int | None]:
        async with websockets.connect(writer_server, compression=compression, max_size=2**20) as ws:
            assert (ws.protocol.extensions != []) == (compression == "deflate")
            await ws.send("go")
            received = [message async for message in ws]
            return received, ws.close_code

    received, code = asyncio.run(scenario())
    assert code == 1000
    assert received == TEXTS


def test_plain_and_compressing_clients_of_the_hub_get_the_same_frames(hub: HubProcess, token: str) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix)
    lms = SimulatedLMS(seed=23)

    async def open_client(compression: str | None) -> websockets.ClientConnection:
        ws = await websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"},
                                      compression=compression)
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.send(orjson.dumps({"type": "subscribe"}).decode())
        return ws

    async def scenario() -> tuple[list[dict], list[dict], list[str]]:
        plain, deflate = await open_client(None), await open_client("deflate")
        await asyncio.sleep(0.3)
        cursors = [await asyncio.to_thread(backend.send, lms.next_event()) for _ in range(200)]
        got_plain, got_deflate = await collect(plain, 200, 20), await collect(deflate, 200, 20)
        await plain.close()
        await deflate.close()
        return got_plain, got_deflate, cursors

    got_plain, got_deflate, cursors = asyncio.run(scenario())
    backend.close()
    assert [frame["cursor"] for frame in got_plain] == cursors
    assert got_plain == got_deflate
