"""A TCP fault proxy: what the network between two soak processes does, set from the fault schedule.

One listening port in front of one or more upstreams (several: each new connection goes to one that
accepts, as a load balancer would, so consumers reconnect across hubs). Faults apply to every
connection through it: `latency` delays each chunk, `stall()` holds every byte until `resume()`,
`reset()` ends the open connections with a TCP RST, and `partition()` does that and refuses new
connections until `heal()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct

CHUNK = 65536


class FaultProxy:
    def __init__(self, name: str, upstreams: list[tuple[str, int]], rng: random.Random | None = None) -> None:
        self.name = name
        self.upstreams = upstreams
        self.latency = 0.0
        self.partitioned = False
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._rng = rng or random.Random(0)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def partition(self) -> None:
        self.partitioned = True
        self.reset()

    def heal(self) -> None:
        self.partitioned = False
        self.resume()
        self.latency = 0.0

    def reset(self) -> None:
        """Abort every open connection through the proxy with a RST on both sides."""
        for pair in list(self._pairs):
            for writer in pair:
                _abort(writer)
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            _abort(writer)
            return
        upstream = await self._connect()
        if upstream is None:
            _abort(writer)
            return
        up_reader, up_writer = upstream
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self.connections += 1
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for side in pair:
                with contextlib.suppress(Exception):
                    side.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        order = list(self.upstreams)
        self._rng.shuffle(order)
        for host, port in order:
            with contextlib.suppress(OSError):
                return await asyncio.wait_for(asyncio.open_connection(host, port), 2)
        return None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                await self._flowing.wait()
                if self.partitioned or writer.is_closing():
                    break
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()
