"""A TCP proxy in front of a redis-server that can silence pub/sub: once `mute()` is called, nothing more is
forwarded from Redis to a connection that has sent a SUBSCRIBE, while it stays open, as a half-open TCP
connection after a NAT or firewall dropped its state does. Commands on other connections pass as before."""

from __future__ import annotations

import contextlib
import socket
import threading


class MuteProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._muted = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="mute-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def mute(self) -> None:
        """From now on, subscribers receive nothing (their notices are lost), without any error."""
        self._muted.set()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._sockets += [client, server]
            subscriber = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, subscriber, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, subscriber, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, subscriber: threading.Event, upstream: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return
            if upstream and b"SUBSCRIBE" in data.upper():
                subscriber.set()
            if not upstream and subscriber.is_set() and self._muted.is_set():
                continue  # lost on the way
            try:
                sink.sendall(data)
            except OSError:
                return
