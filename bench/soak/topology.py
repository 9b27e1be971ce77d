"""The soak's processes on one machine and the fault proxies between them.

Redis (one server, AOF with fsync always); two `rthub serve` hubs, each reaching Redis through a proxy
of its own; the LMS publishers reaching Redis through one more; the consumers' SDK streams and the
admin reaching the hubs through a load-balancing proxy; one receiver process per webhook or Caliper
client and a Ralph LRS, each behind a proxy the hubs deliver through. Every blocking start runs in a
thread: the proxies live on the harness's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.soak.proxy import FaultProxy
from bench.soak.world import PUBLISHERS, Consumer
from hub.dev.embedded import free_port
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hubproc import ROOT, HubProcess, _import_path
from tests.servers import RedisServer
from tests.waiting import until_serving

PREFIX = "soak:"
HUB_ENV = {
    "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true",
    "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1,2,3,5,5,5,5,5",
    "RTHUB_TOKEN_LIFETIME": "60",
    "RTHUB_SECRET_GRACE_PERIOD": "8",
    "RTHUB_TOKEN_FAILURE_LIMIT": "100000",
    "RTHUB_TOKEN_FAILURE_IP_LIMIT": "100000",
}


class SoakHub(HubProcess):
    """`rthub serve` as `HubProcess` starts it, its output in a log file."""

    def __init__(self, redis_url: str, env: dict[str, str], log: Path) -> None:
        super().__init__(redis_url, PREFIX, env={**HUB_ENV, **env})  # env's RTHUB_ISSUER: the same for all
        self.log = log

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env={**self.env, "PYTHONPATH": _import_path()}, stdout=out, stderr=subprocess.STDOUT,
            )
        until_serving(self.process, f"{self.http}/healthz", "hub", timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class Program:
    """A helper process (receiver, publisher) that can be killed and started again with the same arguments."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.env = {**os.environ, "PYTHONPATH": _import_path(), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int, timeout: float = 90) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code


class Topology:
    def __init__(self, workdir: Path, consumers: tuple[Consumer, ...], rate: float, seed: int, lrs: bool) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir / "redis", appendonly=True)
        self.consumers = consumers
        self.rate, self.seed, self.with_lrs = rate, seed, lrs
        self.hubs: list[SoakHub] = []
        self.redis_proxies: list[FaultProxy] = []
        self.lms_proxy: FaultProxy | None = None
        self.front: FaultProxy | None = None
        self.receivers: dict[str, Program] = {}
        self.receiver_proxies: dict[str, FaultProxy] = {}
        self.receiver_logs: dict[str, Path] = {}
        self.publishers: list[Program] = []
        self.ralph: RalphServer | None = None
        self.ralph_proxy: FaultProxy | None = None
        self.data_dir = workdir / "data"

    @property
    def front_url(self) -> str:
        assert self.front is not None
        return f"http://127.0.0.1:{self.front.port}"

    def receiver_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.receiver_proxies[name].port}/hook"

    @property
    def lrs_url(self) -> str:
        assert self.ralph_proxy is not None
        return f"http://127.0.0.1:{self.ralph_proxy.port}/xAPI/"

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, **HUB_ENV, "RTHUB_REDIS_URL": self.redis.url, "RTHUB_REDIS_PREFIX": PREFIX,
                "RTHUB_DATA_DIR": str(self.data_dir), "PYTHONPATH": _import_path()}

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        redis_address = [("127.0.0.1", self.redis.port)]
        self.front = FaultProxy("consumers-hubs", [])
        await self.front.start()
        for index in range(2):
            proxy = FaultProxy(f"hub{index}-redis", redis_address)
            await proxy.start()
            self.redis_proxies.append(proxy)
            self.hubs.append(SoakHub(f"redis://127.0.0.1:{proxy.port}/0",
                                     {"RTHUB_DATA_DIR": str(self.data_dir), "RTHUB_ISSUER": self.front_url},
                                     self.logs / f"hub{index}.log"))
        await asyncio.to_thread(self.hubs[0].start)  # the first one makes the key files; then the other
        await asyncio.to_thread(self.hubs[1].start)
        self.front.upstreams = [("127.0.0.1", hub.port) for hub in self.hubs]
        self.lms_proxy = FaultProxy("lms-redis", redis_address)
        await self.lms_proxy.start()
        for consumer in self.consumers:
            if consumer.receiver:
                port = free_port()
                log = self.workdir / f"receiver-{consumer.name}.jsonl"
                self.receiver_logs[consumer.name] = log
                argv = [sys.executable, "-m", "bench.soak.receiver", str(port), str(log), consumer.receiver]
                self.receivers[consumer.name] = Program(consumer.name, argv, self.logs / f"{consumer.name}.log")
                self.receivers[consumer.name].start()
                proxy = FaultProxy(f"hubs-{consumer.name}", [("127.0.0.1", port)])
                await proxy.start()
                self.receiver_proxies[consumer.name] = proxy
        if self.with_lrs:
            self.ralph = RalphServer(self.workdir / "ralph")
            await asyncio.to_thread(self.ralph.start)
            self.ralph_proxy = FaultProxy("hubs-lrs", [("127.0.0.1", self.ralph.port)])
            await self.ralph_proxy.start()
        spool = self.workdir / "spool"
        for index in range(PUBLISHERS):
            self.publishers.append(Program(
                f"lms{index}",
                [sys.executable, "-m", "bench.soak.publisher", str(index), str(self.rate / PUBLISHERS), str(self.seed),
                 str(self.workdir / f"lms{index}.log")],
                self.logs / f"lms{index}.out",
                env={"RTHUB_REDIS_URL": f"redis://127.0.0.1:{self.lms_proxy.port}/0", "RTHUB_REDIS_PREFIX": PREFIX,
                     "SOAK_SPOOL": str(spool / f"lms{index}")},  # one per worker: a restart adopts its orphans
            ))

    def start_publishers(self) -> None:
        for publisher in self.publishers:
            publisher.start()

    async def stop_publishers(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.signal, signal.SIGTERM) for p in self.publishers))

    def repair_ralph(self) -> list[str]:
        """After a SIGKILL: what Ralph's file store left torn, made readable again. Ralph rewrites its read
        history (`app/history.json`) whole on every read, so a kill mid-write leaves it truncated and
        every later request fails with a 500; the statements file may end in a torn line. Neither was
        acknowledged to the hub, which sends again what it covers."""
        assert self.ralph is not None
        done = []
        history = self.ralph.directory / "app" / "history.json"
        if history.exists():
            try:
                json.loads(history.read_text())
            except ValueError:
                history.unlink()
                done.append("torn history.json removed")
        for store in (self.ralph.directory / "statements").rglob("*.jsonl"):
            data = store.read_bytes()
            if data and not data.endswith(b"\n"):
                store.write_bytes(data[: data.rfind(b"\n") + 1])
                done.append(f"torn last line of {store.name} cut")
        return done

    def lrs_statements(self) -> list[dict[str, Any]]:
        """Every statement in Ralph's file store (read from the files: the LRS's own copy, once each)."""
        assert self.ralph is not None
        found = []
        for store in (self.ralph.directory / "statements").rglob("*.jsonl"):
            for line in store.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    async def restart_redis(self, kill: bool, keep_data: bool = True) -> None:
        await asyncio.to_thread(self.redis.stop, kill)
        if not keep_data:
            for child in self.redis.workdir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        await asyncio.to_thread(self.redis.start)

    async def stop(self) -> None:
        for publisher in self.publishers:
            if publisher.running:
                await asyncio.to_thread(publisher.signal, signal.SIGKILL)
        for hub in self.hubs:
            if hub.running:
                await asyncio.to_thread(hub.signal, signal.SIGTERM)
        for receiver in self.receivers.values():
            if receiver.running:
                await asyncio.to_thread(receiver.signal, signal.SIGKILL)
        if self.ralph is not None:
            await asyncio.to_thread(self.ralph.stop)
        for proxy in [*self.redis_proxies, *self.receiver_proxies.values(), self.front, self.lms_proxy,
                      self.ralph_proxy]:
            if proxy is not None:
                await proxy.close()
        await asyncio.to_thread(self.redis.stop)
