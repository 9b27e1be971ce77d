"""`rthub serve --workers N` renders each event once, in the shared render stage.

Real processes throughout: `rthub serve --workers 2` (uvicorn workers plus the render-stage
process), a real redis-server, real WebSocket clients spread over both workers by the kernel.
Every socket gets every event once, in order — also when the stage is SIGKILLed or SIGTERMed
mid-stream (the workers follow the live feed themselves, the watchdog restarts the stage, and they
switch back) — and the workers really take the stage's renders. A bundle that lacks a group (a
client the stage has not seen yet) is rendered by the worker from the raw event it carries.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from auth.identity import ClientIdentity
from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.fanout.dispatch import Fanout
from hub.fanout.stage.bundle import decode, encode
from hub.fanout.stage.feed import connect as connect_stage
from hub.fanout.stage.server import BATCH, RenderStage
from hub.fanout.subscriber import Connection
from hub.ingest import Entry
from hub.redis import client as redis_client
from hub.translate import TranslationSettings
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from rthub_lms.grants import compile_grant, event_facts
from tests import SEND_TIMEOUT
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until, wait_until
from tests.wsclient import collect, connect

SOCKETS = 8


def stage_pids(hub: HubProcess) -> list[int]:
    """The render-stage process(es) of this hub: children of `rthub serve` running hub.render_stage."""
    assert hub.process is not None
    found = []
    for pid in _children(hub.process.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                cmdline = file.read().split(b"\0")
        except OSError:
            continue
        if b"hub.render_stage" in cmdline:
            found.append(pid)
    return found


def wait_for_stage(hub: Hub, timeout: float = 15) -> int:
    pids: list[int] = []

    def started() -> bool:
        pids[:] = stage_pids(hub)
        return bool(pids)

    wait_until(started, timeout, "no render stage process")
    return pids[0]


def most_bundled(hub: Hub) -> int:
    """The highest `rthub_events_from_render_stage_total` among the workers answering a few scrapes."""
    best = 0
    for _ in range(12):
        text = httpx.get(f"{hub.http}/metrics", timeout=5, headers={"connection": "close"}).text
        for line in text.splitlines():
            if line.startswith("rthub_events_from_render_stage_total"):
                best = max(best, int(float(line.rsplit(" ", 1)[1])))
    return best


@pytest.fixture
def workers_hub(redis_server: RedisServer, prefix: str) -> Iterator[HubProcess]:
    hub = HubProcess(redis_server.url, prefix, workers=2)
    hub.start()
    yield hub
    hub.stop()


def run_stream(
    hub: Hub, count: int, during: Callable[[int], None] | None = None, pause: float = 0.0025
) -> tuple[list[str], list[list[str]]]:
    """Publish `count` events, `pause` s apart (~400/s), while SOCKETS sockets listen; `during(i)`
    runs before event i."""
    token = hub.token()
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=31)
    events = [lms.next_event() for _ in range(count)]
    cursors: list[str] = []

    def publish() -> None:
        for index, event in enumerate(events):
            if during is not None:
                during(index)
            cursors.append(backend.send(event))
            if pause:
                time.sleep(pause)  # pacing

    async def scenario() -> list[list[str]]:
        sockets = [await connect(hub.ws, token) for _ in range(SOCKETS)]
        # past the subscribe window, every worker following its feed: a worker's feed start is not
        # observable from outside (no metric, no log line), so this stays a fixed wait
        await asyncio.sleep(1.2)
        thread = threading.Thread(target=publish)
        thread.start()
        got = await asyncio.gather(*(collect(ws, count, 60) for ws in sockets))
        thread.join()
        for ws in sockets:
            await ws.close()
        return [[frame["cursor"] for frame in frames] for frames in got]

    received = asyncio.run(scenario())
    backend.close()
    return cursors, received


def test_every_socket_gets_every_event_once_through_the_render_stage(workers_hub: HubProcess) -> None:
    wait_for_stage(workers_hub)
    cursors, received = run_stream(workers_hub, 300)
    assert all(cursors)
    for got in received:
        assert got == cursors
    assert most_bundled(workers_hub) >= 250  # the workers took the stage's renders


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_render_stage_dying_mid_stream_loses_and_repeats_nothing(workers_hub: HubProcess, sig: int) -> None:
    first = wait_for_stage(workers_hub)

    def kill_at_200(index: int) -> None:
        if index == 200:
            os.kill(first, sig)

    cursors, received = run_stream(workers_hub, 800, kill_at_200)
    assert all(cursors)
    for got in received:
        assert got == cursors  # each cursor once, in stream order, across the stage's death and return
    restarted = wait_for_stage(workers_hub)
    assert restarted != first
    before = most_bundled(workers_hub)
    cursors, received = run_stream(workers_hub, 200)
    assert all(got == cursors for got in received)
    assert most_bundled(workers_hub) >= before + 150  # the workers went back to the restarted stage


def test_a_stalled_render_stage_catching_up_in_batches_loses_and_repeats_nothing(workers_hub: HubProcess) -> None:
    """The stage stopped (SIGSTOP) while 1,000 events are sent finds them all waiting when it goes on:
    it reads many per socket read and writes them to the workers in batches (one write per worker,
    `BATCH` at the most). Then it is SIGKILLed mid-stream. Each socket gets every event once, in order."""
    first = wait_for_stage(workers_hub)

    def stall_then_kill(index: int) -> None:
        if index == 300:
            os.kill(first, signal.SIGSTOP)
        elif index == 1300:
            os.kill(first, signal.SIGCONT)
        elif index == 1700:
            os.kill(first, signal.SIGKILL)

    cursors, received = run_stream(workers_hub, 2000, stall_then_kill, pause=0)
    assert all(cursors)
    for got in received:
        assert got == cursors
    assert wait_for_stage(workers_hub) != first


def test_the_stage_writes_after_a_quiet_spell_at_once_and_holds_a_quick_run_for_one_write(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A bundle after a quiet spell goes to the workers in the same tick. Bundles that follow it
    within `RTHUB_STAGE_WRITE_DELAY` wait and go in one write, so a worker wakes once for them; a full
    `BATCH` goes at once. Every bundle arrives once, in order."""
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, stage_write_delay=1.0)
    lms = SimulatedLMS(seed=9)
    entries = [Entry(f"1700000000000-{index}", lms.next_event()) for index in range(1 + 5 + BATCH)]

    async def scenario() -> tuple[list[int], float, list[str]]:
        client = redis_client(redis_server.url)
        stage = RenderStage(client, settings, sharded=False)
        path = str(tmp_path / "stage.sock")
        server = await asyncio.start_unix_server(stage.accept, path)
        link = await connect_stage(path)
        await async_wait_until(lambda: stage.workers, 10, "the stage never accepted the worker's link")
        loop = asyncio.get_running_loop()
        writes = []
        started = loop.time()
        await stage.publish(entries[0])
        await asyncio.sleep(0)  # one loop turn: the tick ends
        writes.append(stage.counts["writes"])  # the lone bundle: written in the same tick
        got = [await link.next()]
        for entry in entries[1:6]:
            await stage.publish(entry)
        await asyncio.sleep(0)  # one loop turn: the tick ends
        writes.append(stage.counts["writes"])  # the quick run: held
        got += [await link.next() for _ in range(5)]
        waited = loop.time() - started
        writes.append(stage.counts["writes"])
        for entry in entries[6:]:
            await stage.publish(entry)
        writes.append(stage.counts["writes"])  # a full batch: written without waiting
        got += [await link.next() for _ in range(BATCH)]
        link.close()
        server.close()
        await client.aclose()
        return writes, waited, [bundle.cursor for bundle in got]

    writes, waited, cursors = asyncio.run(scenario())
    assert writes == [1, 1, 2, 3]
    assert waited >= 0.99  # the run went one delay after the lone bundle's write, not before
    assert cursors == [entry.cursor for entry in entries]


def test_a_group_missing_from_a_bundle_is_rendered_by_the_worker(redis_server: RedisServer, prefix: str) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix)
    event = SimulatedLMS(seed=5).next_event()
    entry = Entry("1700000000000-0", event)
    facts = event_facts(event)

    async def scenario() -> tuple[list[str], Counter[str]]:
        client = redis_client(redis_server.url)
        fanout = Fanout(Anonymiser(RedisIdStore(client, settings)), TranslationSettings("http://lms", "test"))
        sent: list[str] = []

        async def send_text(text: str) -> None:
            sent.append(text)

        identity = ClientIdentity(client_id="cl_late", consumer_type="enterprise", translator="caliper",
                                  grant=[{}], delivery="websocket")
        conn = Connection(identity, compile_grant([{}]))
        conn.release_live()
        conn.start(None, send_text)
        fanout.add(conn)
        # the stage rendered xAPI for another group, and nothing for (caliper, enterprise)
        bundle = decode(encode(entry, facts, {("xapi", "adaptive"): '{"type": "event"}'})[4:])
        await fanout.dispatch(bundle)
        await async_wait_until(lambda: sent, 10, "the bundle was never sent to the socket")
        await client.aclose()
        return sent, fanout.counts

    sent, counts = asyncio.run(scenario())
    assert len(sent) == 1
    frame = orjson.loads(sent[0])
    assert frame["cursor"] == entry.cursor
    assert frame["data"]["type"]  # a Caliper event, rendered here
    assert counts["translated:caliper"] == 1 and counts["bundled"] == 1


@pytest.mark.slow
def test_redis_restart_under_the_render_stage_loses_nothing(own_redis: RedisServer, tmp_path: Path) -> None:
    """Redis goes away under the stage and both workers, then returns: every socket gets everything
    Redis holds, once, in stream order (the LMS side spools meanwhile)."""
    hub = HubProcess(own_redis.url, "rs:", workers=2)
    hub.start()
    try:
        wait_for_stage(hub)
        token = hub.token()
        backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix="rs:", preemptive=False,
                                  spool_path=str(tmp_path / "spool"), timeout=SEND_TIMEOUT)
        lms = SimulatedLMS(seed=71)

        def publish(count: int) -> None:
            for _ in range(count):
                backend.send(lms.next_event())

        async def scenario() -> list[list[str]]:
            sockets = [await connect(hub.ws, token) for _ in range(SOCKETS)]
            await asyncio.sleep(1.2)  # every worker following its feed (not observable from outside)
            await asyncio.to_thread(publish, 30)
            got = [await collect(ws, 30, 20) for ws in sockets]
            own_redis.stop()
            await asyncio.to_thread(publish, 30)  # spooled by the LMS side
            await asyncio.sleep(1.0)  # time passing: Redis stays away for a while
            own_redis.start()
            await asyncio.to_thread(publish, 30)
            for frames, ws in zip(got, sockets, strict=True):
                frames += await collect(ws, 60, 40)
                await ws.close()
            return [[frame["cursor"] for frame in frames] for frames in got]

        received = asyncio.run(scenario())
        backend.close()
    finally:
        hub.stop()
    stored = [cursor.decode() for cursor, _ in own_redis.client().xrange(rkeys.stream_key(rkeys.Prefix("rs:")))]
    assert len(stored) >= 90
    for got in received:
        assert got == stored


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_rthub_serve_with_workers_killed_and_restarted_a_resuming_client_loses_nothing(
    workers_hub: HubProcess, sig: int
) -> None:
    """The whole `rthub serve --workers 2` goes (workers and stage follow their supervisor, so the
    port is free again), the LMS keeps publishing, the hub restarts and the client resumes."""
    wait_for_stage(workers_hub)
    assert workers_hub.process is not None
    supervisor = workers_hub.process.pid
    token = workers_hub.token()
    backend = RealtimeBackend(
        redis_url=workers_hub.redis_url, redis_prefix=workers_hub.prefix, preemptive=False, timeout=SEND_TIMEOUT,
    )
    lms = SimulatedLMS(seed=73)

    def publish(count: int) -> list[str]:
        cursors = [backend.send(lms.next_event()) for _ in range(count)]
        assert all(cursors)
        return cursors

    async def scenario() -> tuple[list[str], list[str]]:
        ws = await connect(workers_hub.ws, token)
        await asyncio.sleep(1.2)  # every worker following its feed (not observable from outside)
        sent = await asyncio.to_thread(publish, 50)
        got = [frame["cursor"] for frame in await collect(ws, 50)]
        children = _children(supervisor)
        workers_hub.process.send_signal(sig)
        workers_hub.process.wait(15)
        await async_wait_until(lambda: all(_parent(pid) is None for pid in children), 10,
                               "children of rthub serve outlived it")  # every worker and the stage went with it
        sent += await asyncio.to_thread(publish, 50)  # while no hub runs
        await asyncio.to_thread(workers_hub.start)
        wait_for_stage(workers_hub)
        ws = await connect(workers_hub.ws, token, {"type": "subscribe", "resume_from": got[-1]})
        sent += await asyncio.to_thread(publish, 50)
        got += [frame["cursor"] for frame in await collect(ws, 100, 30)]
        await ws.close()
        return sent, got

    sent, got = asyncio.run(scenario())
    backend.close()
    assert got == sent


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and _parent(int(name)) == pid]


def _parent(pid: int) -> int | None:
    """The parent of a live (not zombie) process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


@pytest.mark.parametrize("value", ["inf", "nan", "-0.001", "2", "soon"])
def test_rthub_serve_refuses_a_stage_write_delay_it_cannot_use(value: str) -> None:
    """A delay of `inf` would hold bundles until a batch fills; refused at start, before any worker runs."""
    env = {**os.environ, "RTHUB_STAGE_WRITE_DELAY": value}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "serve", "--workers", "2", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "configuration error: RTHUB_STAGE_WRITE_DELAY" in done.stderr


def test_a_stage_asked_to_stop_while_redis_does_not_answer_still_exits(own_redis: RedisServer, tmp_path: Path) -> None:
    """SIGTERM (what Linux sends when `rthub serve` dies) while Redis is frozen: the stage stops within
    its shutdown bound instead of waiting on Redis, so it never outlives the hub that started it."""
    socket_path = tmp_path / "stage.sock"
    env = {**os.environ, "RTHUB_REDIS_URL": own_redis.url, "RTHUB_REDIS_PREFIX": "stage-stop:"}
    stage = subprocess.Popen([sys.executable, "-m", "hub.render_stage", str(socket_path)], env=env)
    assert own_redis.process is not None
    try:
        wait_until(socket_path.exists, 20, "the render stage never opened its socket")
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            stage.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = stage.wait(20)
            took = time.monotonic() - started
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
    assert code is not None
    assert took < 5, f"the stage took {took:.1f}s to stop with Redis frozen"
