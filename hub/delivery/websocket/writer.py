"""uvicorn's sans-I/O WebSocket protocol with a synchronous frame writer for the fan-out's fast path.

ASGI's `send` is a coroutine, so a frame sent through it costs a task wake-up per frame per
subscriber. `rthub serve` runs uvicorn with `FrameWriterProtocol`, which puts a `TransportWriter` in
the connection scope's extensions under `EXTENSION`: a connection then writes the frames of one
event-loop tick in one `transport.write` while the transport is not paused (`Connection.flush`),
and waits for `resume_writing` otherwise. Under any other ASGI server the extension is absent and
every frame goes through ASGI's `send`.

Without extensions (no permessage-deflate) a server frame is the same bytes for every socket, so
its wire form is built once per `Frame` and shared by every subscriber that gets it.
"""

from __future__ import annotations

from collections.abc import Sequence

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State

from hub.fanout.render import Frame

EXTENSION = "rthub.frame_writer"
# uvicorn's `ws` setting for `rthub serve` and the demo.
UVICORN_WS = "hub.delivery.websocket.writer:FrameWriterProtocol"


def wire(frame: Frame) -> bytes:
    """The unmasked, uncompressed WebSocket text frame of `frame`, serialised once."""
    if frame.wire is None:
        frame.wire = WireFrame(Opcode.TEXT, frame.text.encode()).serialize(mask=False)
    return frame.wire


class TransportWriter:
    """Writes frames straight to one WebSocket's transport (see the module docstring)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @property
    def ready(self) -> bool:
        """Open, past the handshake, not closing, and the transport's buffer below its high-water mark."""
        protocol = self._protocol
        return protocol.writable.is_set() and protocol.handshake_complete and not self.closed

    @property
    def closed(self) -> bool:
        protocol = self._protocol
        return protocol.disconnected or protocol.close_sent or protocol.conn.state is not State.OPEN

    async def writable(self) -> None:
        """Wait for the transport to drain below its low-water mark (or for the connection to end)."""
        await self._protocol.writable.wait()

    def write(self, frames: Sequence[Frame]) -> None:
        protocol = self._protocol
        if protocol.conn.extensions:  # permessage-deflate: each socket compresses with its own context
            for frame in frames:
                protocol.conn.send_text(frame.text.encode())
            protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        elif len(frames) == 1:
            protocol.transport.write(wire(frames[0]))
        else:
            protocol.transport.write(b"".join([wire(frame) for frame in frames]))


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol, plus a `TransportWriter` in every WebSocket scope."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the app's task is created but has not run yet
            scope["extensions"][EXTENSION] = TransportWriter(self)
