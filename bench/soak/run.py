"""One soak run: the topology up, clients created, publishers started, faults and client changes played
from the seed, then a calm period, the publishers drained, the system left to settle, and everything
every consumer received collected for the checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.soak.consumers import Admin, WsConsumer
from bench.soak.grants import Grant
from bench.soak.schedule import Fault, plan
from bench.soak.topology import PREFIX, Topology
from bench.soak.world import CONSUMERS, PUBLISHERS, Consumer
from bench.subscribers import raise_file_limit
from hub.config import Settings
from rthub_lms import keys

ENDPOINT_PASSWORD = "lrs-password"
CALIPER_KEY = "soak-caliper-key"


@dataclass
class Change:
    """A client's entitlement changed somewhere between two stream positions (both inclusive)."""

    before: str
    after: str
    grant: Grant
    what: str


@dataclass
class ClientState:
    consumer: Consumer
    client_id: str = ""
    secret: str = ""
    webhook_secret: str = ""
    changes: list[Change] = field(default_factory=list)
    streams: list[WsConsumer] = field(default_factory=list)
    token_checks: list[str] = field(default_factory=list)  # one line per check that a dead credential failed
    token_leaks: list[str] = field(default_factory=list)  # one line per credential that worked when it must not
    revoked_token: str = ""


@dataclass
class Config:
    minutes: float
    seed: int
    rate: float
    workdir: Path
    lrs: bool = True
    data_loss: bool = False
    settle: float = 600.0


@dataclass
class Collected:
    config: Config
    clients: dict[str, ClientState]
    faults: list[Fault]
    stream: list[tuple[str, dict[str, Any]]]
    sent: dict[int, str]  # unique ms -> course, from the publishers' logs
    lms_counts: list[dict[str, int]]
    receiver_logs: dict[str, list[dict[str, Any]]]
    lrs_statements: list[dict[str, Any]]
    deadletters: dict[str, list[dict[str, Any]]]
    phases: dict[str, float]
    notes: list[str]
    settled: bool = True
    open_files: tuple[int, int] = (0, 0)  # the harness process's most open descriptors, and its limit


class Soak:
    def __init__(self, config: Config) -> None:
        self.config = config
        consumers = tuple(c for c in CONSUMERS if config.lrs or c.delivery != "lrs")
        self.topology = Topology(config.workdir, consumers, config.rate, config.seed, config.lrs)
        self.settings = Settings(redis_prefix=PREFIX, data_dir=str(config.workdir / "data"))
        self.clients = {consumer.name: ClientState(consumer) for consumer in consumers}
        self.redis: aioredis.Redis | None = None
        self.admin: Admin | None = None
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}
        self.note_unsettled = False
        self.open_files = 0
        self.file_limit = 0

    def log(self, message: str) -> None:
        line = f"[soak {time.strftime('%H:%M:%S')}] {message}"
        self.notes.append(line)
        print(line, file=sys.stderr, flush=True)

    # --- the stream as the harness sees it (straight to Redis, not through a proxy) ---

    async def last_cursor(self) -> str:
        assert self.redis is not None
        while True:
            try:
                newest = await self.redis.xrevrange(keys.stream_key(self.settings), count=1)
                return newest[0][0].decode() if newest else "0-0"
            except (OSError, aioredis.RedisError):
                await asyncio.sleep(0.2)

    async def changed(self, state: ClientState, what: str, grant: Grant, action: Any) -> Any:
        """Run `action` (an admin call) and record the entitlement change around it: sockets are closed
        within a second of a change, so the window ends a second after the call returned."""
        before = await self.last_cursor()
        result = await action()
        await asyncio.sleep(1.2)
        state.changes.append(Change(before, await self.last_cursor(), grant, what))
        return result

    # --- clients ---

    async def bootstrap(self) -> None:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "hub.cli", "admin", "bootstrap", "--json"],
            env=self.topology.cli_env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rthub admin bootstrap failed: {done.stderr}")
        created = json.loads(done.stdout)
        self.admin = Admin([hub.http for hub in self.topology.hubs], created["client_id"], created["client_secret"])

    def _fields(self, consumer: Consumer) -> dict[str, Any]:
        fields: dict[str, Any] = {"name": consumer.name, "type": consumer.type, "translator": consumer.translator,
                                  "delivery": consumer.delivery, "grant": consumer.grant}
        if consumer.delivery == "webhook":
            fields["webhook_url"] = self.topology.receiver_url(consumer.name)
        elif consumer.delivery == "lrs":
            fields |= {"endpoint_url": self.topology.lrs_url, "endpoint_username": "rthub",
                       "endpoint_password": ENDPOINT_PASSWORD}
        elif consumer.delivery == "caliper-endpoint":
            fields |= {"endpoint_url": self.topology.receiver_url(consumer.name), "endpoint_token": CALIPER_KEY}
        if consumer.batch[0] > 1:
            fields |= {"webhook_batch_max": consumer.batch[0], "webhook_batch_wait": consumer.batch[1]}
        return fields

    async def create(self, state: ClientState, publishing: bool = True) -> None:
        assert self.admin is not None
        consumer = state.consumer
        before = await self.last_cursor()
        response = await self.admin.call("POST", "/clients", json=self._fields(consumer))
        if response.status_code != 201:
            raise RuntimeError(f"creating {consumer.name}: {response.status_code} {response.text}")
        body = response.json()
        state.client_id, state.secret = body["client_id"], body["client_secret"]
        state.webhook_secret = body.get("webhook_secret", "")
        for _ in range(consumer.streams):
            stream = WsConsumer(self.topology.front_url, consumer.name, state.client_id, state.secret,
                                consumer.sdk_filter)
            stream.start()
            state.streams.append(stream)
        for stream in state.streams:  # entitled from the first welcome (no cursor yet: live from there)
            while not stream.record.welcomed_at:
                await asyncio.sleep(0.05)
        if publishing:  # before the publishers start the stream stands still: no window to wait out
            await asyncio.sleep(1.2)
        state.changes.append(Change(before, await self.last_cursor(), consumer.grant, "created"))
        self.log(f"created {consumer.name} ({state.client_id})")

    async def set_grant(self, state: ClientState, grant: list[dict[str, Any]]) -> None:
        assert self.admin is not None
        admin = self.admin

        async def patch() -> None:
            response = await admin.call("PATCH", f"/clients/{state.client_id}", json={"grant": grant})
            if response.status_code != 200:
                raise RuntimeError(f"grant of {state.consumer.name}: {response.status_code} {response.text}")

        await self.changed(state, f"grant {json.dumps(grant)}", grant, patch)
        self.log(f"{state.consumer.name}: grant now {json.dumps(grant)}")

    async def rotate(self, state: ClientState) -> None:
        assert self.admin is not None
        old = state.secret
        response = await self.admin.call("POST", f"/clients/{state.client_id}/rotate-secret")
        if response.status_code != 200:
            raise RuntimeError(f"rotating {state.consumer.name}: {response.status_code} {response.text}")
        state.secret = response.json()["client_secret"]
        for stream in state.streams:
            await stream.restart(state.secret)
        self.log(f"{state.consumer.name}: secret rotated")
        await asyncio.sleep(8 + 3)  # RTHUB_SECRET_GRACE_PERIOD is 8 s
        await self.check_secret_refused(state, old, "old secret after rotation and grace period")

    async def revoke(self, state: ClientState) -> None:
        assert self.admin is not None
        admin = self.admin
        token = state.revoked_token = await self.token(state.secret, state.client_id)
        for stream in state.streams:
            stream.revoked = True

        async def revoke() -> None:
            response = await admin.call("POST", f"/clients/{state.client_id}/revoke")
            if response.status_code != 200:
                raise RuntimeError(f"revoking {state.consumer.name}: {response.status_code} {response.text}")

        await self.changed(state, "revoked", None, revoke)
        self.log(f"{state.consumer.name}: revoked")
        await self.check_revoked(state, token)

    async def token(self, secret: str, client_id: str) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                for hub in self.topology.hubs:
                    with contextlib.suppress(httpx.HTTPError):
                        response = await http.post(f"{hub.http}/oauth/token", auth=(client_id, secret),
                                                   data={"grant_type": "client_credentials", "scope": "events:read"})
                        if response.status_code == 200:
                            return str(response.json()["access_token"])
                await asyncio.sleep(0.5)

    async def check_secret_refused(self, state: ClientState, secret: str, what: str) -> None:
        """The token endpoint of every running hub refuses `secret` (4xx; a 5xx is retried)."""
        async with httpx.AsyncClient(timeout=10) as http:
            for hub in self.topology.hubs:
                for _ in range(40):
                    try:
                        response = await http.post(f"{hub.http}/oauth/token", auth=(state.client_id, secret),
                                                   data={"grant_type": "client_credentials", "scope": "events:read"})
                    except httpx.HTTPError:
                        await asyncio.sleep(0.5)
                        continue
                    if response.status_code >= 500:
                        await asyncio.sleep(0.5)
                        continue
                    line = f"{what} at {hub.http}: token endpoint {response.status_code}"
                    (state.token_leaks if response.status_code == 200 else state.token_checks).append(line)
                    break

    async def check_revoked(self, state: ClientState, token: str) -> None:
        """A revoked client's secret gets no token and its last token opens no stream, on every hub."""
        await self.check_secret_refused(state, state.secret, "secret after revocation")
        for hub in self.topology.hubs:
            for _ in range(40):
                try:
                    async with connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                        while True:
                            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                            if frame.get("type") == "event":
                                state.token_leaks.append(f"revoked token got an event at {hub.ws}")
                                break
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else 1006
                    if code in (4401, 4403):
                        state.token_checks.append(f"revoked token on {hub.ws}: closed {code}")
                        break
                    if code == 1013 or code == 1006:
                        await asyncio.sleep(0.5)
                        continue
                    state.token_leaks.append(f"revoked token on {hub.ws}: closed {code}, not 4401/4403")
                    break
                except TimeoutError:
                    state.token_leaks.append(f"revoked token on {hub.ws}: socket stayed open 5 s")
                    break
                except (OSError, InvalidStatus):
                    await asyncio.sleep(0.5)
                    continue
                break

    # --- faults ---

    async def play(self, fault: Fault) -> None:
        topology = self.topology
        fault.started = time.time()
        kind, target = fault.kind, fault.target
        if kind in ("hub-sigkill", "hub-sigterm"):
            hub = topology.hubs[int(target[-1])]
            await asyncio.to_thread(hub.signal, signal.SIGKILL if kind == "hub-sigkill" else signal.SIGTERM)
            await asyncio.sleep(fault.duration)
            await self._restart_hub(hub)
        elif kind in ("redis-sigkill", "redis-sigterm"):
            await asyncio.to_thread(topology.redis.stop, kind == "redis-sigkill")
            await asyncio.sleep(fault.duration)
            await asyncio.to_thread(topology.redis.start)
        elif kind == "redis-data-lost":
            await topology.restart_redis(kill=True, keep_data=False)
        elif kind == "receiver-sigkill":
            program = topology.receivers[target]
            await asyncio.to_thread(program.signal, signal.SIGKILL)
            await asyncio.sleep(fault.duration)
            program.start()
        elif kind == "lrs-sigkill":
            assert topology.ralph is not None and topology.ralph.process is not None
            topology.ralph.process.kill()
            await asyncio.to_thread(topology.ralph.process.wait)
            await asyncio.sleep(fault.duration)
            fault.note = "; ".join(topology.repair_ralph())
            await asyncio.to_thread(topology.ralph.start)
        elif kind == "lms-sigkill-spooled":
            assert topology.lms_proxy is not None
            topology.lms_proxy.partition()
            await asyncio.sleep(fault.param)  # the LMS spools meanwhile
            publisher = topology.publishers[int(target[-1])]
            await asyncio.to_thread(publisher.signal, signal.SIGKILL)
            publisher.start()
            await asyncio.sleep(max(0.0, fault.duration - fault.param))
            topology.lms_proxy.heal()
        elif kind == "receiver-failing":
            flag = Path(f"{topology.receiver_logs[target]}.fail")
            flag.touch()
            await asyncio.sleep(fault.duration)
            flag.unlink()
        elif kind == "receiver-410":
            await self._gone(fault)
        elif kind.startswith("net-"):
            proxy = self._proxy(target)
            action = kind.rsplit("-", 1)[1]
            if action == "latency":
                proxy.latency = fault.param
            elif action == "stall":
                proxy.stall()
            elif action == "partition":
                proxy.partition()
            else:
                proxy.reset()
            await asyncio.sleep(fault.duration)
            proxy.heal()
        fault.ended = time.time()
        self.log(f"fault {kind} {target} {fault.duration:.1f}s {fault.note}".rstrip())

    def _proxy(self, target: str) -> Any:
        topology = self.topology
        if target == "consumers-hubs":
            return topology.front
        if target == "lrs":
            return topology.ralph_proxy
        if target.endswith("-redis"):
            return topology.redis_proxies[int(target[3])]
        return topology.receiver_proxies[target]

    async def _restart_hub(self, hub: Any) -> None:
        for attempt in range(5):
            try:
                await asyncio.to_thread(hub.start)
                return
            except (RuntimeError, TimeoutError) as exc:
                self.log(f"hub restart failed ({exc}); attempt {attempt + 1}")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(hub.signal, signal.SIGKILL)
                await asyncio.sleep(1)
        raise RuntimeError("a hub would not start again")

    async def _gone(self, fault: Fault) -> None:
        """The receiver answers 410 once: the hub disables the endpoint (its queue dead-lettered); after
        `duration` the admin enables it again. When no request reaches the receiver within a minute
        (delivery far behind), the fault is taken back: an enable of an endpoint still enabled, and a
        410 answered after it, would leave the client disabled for the rest of the run."""
        assert self.admin is not None
        state = self.clients[fault.target]
        log = self.topology.receiver_logs[fault.target]
        flag = Path(f"{log}.gone")
        before = await self.last_cursor()
        flag.touch()
        if not await self._disabled(state, 60):
            try:
                flag.unlink()
            except FileNotFoundError:  # the receiver took it meanwhile: its 410 is on the way
                if not await self._disabled(state, 60):
                    fault.note = "(answered 410; the endpoint was not disabled within 60 s)"
            else:
                fault.note = "(no request reached the receiver within 60 s: no 410 answered)"
                return
        await asyncio.sleep(1.2)
        state.changes.append(Change(before, await self.last_cursor(), None, "endpoint 410: disabled"))
        await asyncio.sleep(fault.duration)
        await self._enable(state)

    async def _enable(self, state: ClientState) -> None:
        admin = self.admin
        assert admin is not None

        async def enable() -> None:
            await admin.call("POST", f"/clients/{state.client_id}/webhooks/enable")

        await self.changed(state, "endpoint enabled again", state.consumer.grant, enable)

    async def _disabled(self, state: ClientState, seconds: float) -> bool:
        """Whether the admin API shows the client's webhook endpoint disabled within `seconds`."""
        assert self.admin is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            response = await self.admin.call("GET", f"/clients/{state.client_id}")
            if response.json().get("webhook_status") == "disabled":
                return True
            await asyncio.sleep(0.1)
        return False

    # --- the run ---

    async def churn(self, phase: float, start: float) -> None:
        """Clients created, changed, rotated and revoked at their moments of the fault phase."""
        moments: list[tuple[float, str, ClientState, Any]] = []
        for state in self.clients.values():
            consumer = state.consumer
            if consumer.create_at:
                moments.append((consumer.create_at, "create", state, None))
            step = (0.8 - consumer.create_at) / (len(consumer.changes) + 1)
            for index, grant in enumerate(consumer.changes):
                moments.append((consumer.create_at + (index + 1) * step, "grant", state, grant))
            if consumer.rotate:
                moments += [(0.3, "rotate", state, None), (0.6, "rotate", state, None)]
            if consumer.revoke_at:
                moments.append((consumer.revoke_at, "revoke", state, None))
        for at, action, state, grant in sorted(moments, key=lambda item: item[0]):
            await asyncio.sleep(max(0.0, start + at * phase - time.monotonic()))
            if action == "create":
                await self.create(state)
            elif action == "grant":
                await self.set_grant(state, grant)
            elif action == "rotate":
                await self.rotate(state)
            else:
                await self.revoke(state)

    async def chaos(self, faults: list[Fault]) -> None:
        for fault in faults:
            await self.play(fault)
            await asyncio.sleep(fault.pause)

    async def run(self) -> Collected:
        config = self.config
        topology = self.topology
        total = config.minutes * 60
        phase, calm = total * 0.8, max(5.0, total * 0.1)
        faults = plan(config.seed, phase, [c.name for c in CONSUMERS if c.receiver], config.lrs, config.data_loss)
        self.log(f"{len(faults)} faults planned over {phase:.0f} s (seed {config.seed})")
        # Every proxied connection holds two descriptors here: a test process's default soft limit may be low.
        self.file_limit = raise_file_limit()
        watch = asyncio.create_task(self._count_files())
        await topology.start()
        self.redis = aioredis.from_url(topology.redis.url, socket_timeout=5)
        try:
            await self.bootstrap()
            for state in self.clients.values():
                if not state.consumer.create_at:
                    await self.create(state, publishing=False)
            topology.start_publishers()
            self.phases["publishing"] = time.time()
            start = time.monotonic()
            await asyncio.gather(self.churn(phase, start), self.chaos(faults))
            self.phases["faults_over"] = time.time()
            await self.heal()
            await asyncio.sleep(calm)
            await topology.stop_publishers()
            self.phases["published"] = time.time()
            self.log("publishers drained; settling")
            await self.settle()
            self.phases["settled"] = time.time()
            for state in self.clients.values():
                if state.revoked_token:
                    await self.check_revoked(state, state.revoked_token)
            return await self.collect(faults)
        finally:
            watch.cancel()
            for state in self.clients.values():
                for stream in state.streams:
                    await stream.stop()
            if self.admin is not None:
                await self.admin.aclose()
            await topology.stop()
            await self.redis.aclose()

    async def _count_files(self) -> None:
        """The most descriptors this process held at once (sampled), for the report: a run the harness
        starved of them would show it."""
        while True:
            self.open_files = max(self.open_files, len(os.listdir("/proc/self/fd")))
            await asyncio.sleep(0.5)

    async def heal(self) -> None:
        topology = self.topology
        for proxy in [*topology.redis_proxies, *topology.receiver_proxies.values(), topology.front,
                      topology.lms_proxy, topology.ralph_proxy]:
            if proxy is not None:
                proxy.heal()
        for hub in topology.hubs:
            if not hub.running:
                await self._restart_hub(hub)
        for program in [*topology.receivers.values(), *topology.publishers]:
            if not program.running:
                program.start()
        for log in topology.receiver_logs.values():
            for flag in (Path(f"{log}.fail"), Path(f"{log}.gone")):
                flag.unlink(missing_ok=True)
        for state in self.clients.values():  # a 410 the hub acted on only after the fault enabled it again
            if state.consumer.receiver == "gone" and state.client_id and await self._disabled(state, 0.1):
                self.log(f"{state.consumer.name}: disabled after its 410 fault ended; enabled again")
                await self._enable(state)

    async def settle(self) -> None:
        """Wait until webhook routing has reached the stream's end, nothing is queued for any webhook
        client, and nobody has received anything for 8 s (at most `settle` seconds: then say so)."""
        assert self.redis is not None
        deadline = time.monotonic() + self.config.settle
        last_seen, quiet_since = -1, time.monotonic()
        tip = await self.last_cursor()
        while time.monotonic() < deadline:
            seen = sum(len(stream.record.frames) for state in self.clients.values() for stream in state.streams)
            seen += sum(path.stat().st_size for path in self.topology.receiver_logs.values() if path.exists())
            routed = (await self.redis.get(keys.routed(self.settings)) or b"0-0").decode()
            busy = _key(routed) < _key(tip)
            for state in self.clients.values():
                if state.consumer.delivery != "websocket" and state.client_id:
                    busy = busy or bool(await self.redis.xlen(keys.outbox(self.settings, state.client_id)))
                    busy = busy or bool(await self.redis.xlen(keys.requeue(self.settings, state.client_id)))
            if seen != last_seen or busy:
                last_seen, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since > 8:
                self.log(f"settled ({time.monotonic() - deadline + self.config.settle:.0f} s)")
                return
            await asyncio.sleep(0.5)
        self.note_unsettled = True
        self.log(f"NOT settled within {self.config.settle:.0f} s: what is still on its way counts as lost")

    async def collect(self, faults: list[Fault]) -> Collected:
        assert self.redis is not None
        stream: list[tuple[str, dict[str, Any]]] = []
        after = "-"
        while True:
            page = await self.redis.xrange(keys.stream_key(self.settings), min=after, count=5000)
            if not page:
                break
            for entry_id, fields in page:
                stream.append((entry_id.decode(), json.loads(fields[b"e"])))
            after = "(" + page[-1][0].decode()
        sent: dict[int, str] = {}
        counts = []
        for index in range(PUBLISHERS):
            path = self.config.workdir / f"lms{index}.log"
            for line in path.read_text().splitlines():
                parts = line.split(" ")
                if len(parts) == 3:
                    sent[int(parts[0])] = parts[1]
            counts_path = Path(f"{path}.counts")
            if counts_path.exists():
                counts.append(json.loads(counts_path.read_text()))
        receiver_logs: dict[str, list[dict[str, Any]]] = {}
        for name, path in self.topology.receiver_logs.items():
            receiver_logs[name] = []
            for line in path.read_text().splitlines() if path.exists() else []:
                with contextlib.suppress(ValueError):  # a line torn by a SIGKILL: its sender had no answer
                    receiver_logs[name].append(json.loads(line))
        statements = self.topology.lrs_statements() if self.topology.ralph is not None else []
        deadletters: dict[str, list[dict[str, Any]]] = {}
        for name, state in self.clients.items():
            if state.consumer.delivery == "websocket" or not state.client_id:
                continue
            rows = await self.redis.xrange(keys.deadletters(self.settings, state.client_id))
            deadletters[name] = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
        return Collected(self.config, self.clients, faults, stream, sent, counts, receiver_logs, statements,
                         deadletters, self.phases, self.notes, not self.note_unsettled,
                         (self.open_files, self.file_limit))


def _key(cursor: str) -> tuple[int, int]:
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq or 0)
