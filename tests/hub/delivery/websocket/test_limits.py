"""One consumer must not starve the hub. A `subscribe` frame held 2,219 leading-wildcard
rules (64 KiB): ~85 ms to compile on the event loop, matching ~800 times slower, and with 10 such
sockets another client's subscriber received nothing of 1,000 events. Now filters are bounded (a
clear 1008 names the limit) and sockets per client are limited."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time

import orjson
import pytest
import redis
import websockets

from hub.config import Settings
from hub.delivery.websocket.limits import MAX_FILTER_PATTERNS, MAX_FILTER_RULES, MAX_FILTER_VALUES
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hubproc import ROOT, Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until
from tests.wsclient import connect


def monster_filter() -> list[dict[str, list[str]]]:
    """The reported frame: as many leading-wildcard rules as fit in 64 KiB."""
    return [{"courses": [f"*{index:05d}x"]} for index in range(2219)]


def largest_allowed_filter() -> list[dict[str, list[str]]]:
    """Every limit reached at once: 16 rules, 16 leading-wildcard patterns, 256 values."""
    per_rule = MAX_FILTER_VALUES // MAX_FILTER_RULES - 1
    return [
        {"courses": [f"*{rule}+x*"], "users": [str(100_000 + rule * per_rule + n) for n in range(per_rule)]}
        for rule in range(MAX_FILTER_RULES)
    ]


async def _refusal(url: str, token: str, filter_rules: object) -> tuple[int | None, str]:
    ws = await connect(url, token, subscribe={"type": "subscribe", "filter": filter_rules})
    await asyncio.wait_for(ws.wait_closed(), 5)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize(
    ("filter_rules", "named"),
    [
        (monster_filter(), f"limit {MAX_FILTER_RULES} rules per filter"),
        ([{"courses": [f"*{n}" for n in range(MAX_FILTER_PATTERNS + 1)]}], "wildcard patterns per filter"),
        ([{"users": [str(n) for n in range(MAX_FILTER_VALUES + 1)]}], f"limit {MAX_FILTER_VALUES} values"),
    ],
    ids=["2219-rules", "17-patterns", "257-values"],
)
def test_oversized_filters_close_1008_naming_the_limit(hub: Hub, token: str, filter_rules, named: str) -> None:
    assert len(orjson.dumps({"type": "subscribe", "filter": filter_rules})) < 64 * 1024
    code, reason = asyncio.run(_refusal(hub.ws, token, filter_rules))
    assert code == 1008 and reason.startswith("filter too large") and named in reason, reason


def test_the_largest_allowed_filter_is_accepted(hub: Hub, token: str) -> None:
    async def scenario() -> int | None:
        ws = await connect(hub.ws, token, subscribe={"type": "subscribe", "filter": largest_allowed_filter()})
        await asyncio.sleep(0.5)  # a window: a refused filter would have closed the socket by now
        code = ws.close_code
        await ws.close()
        return code

    assert asyncio.run(scenario()) is None


def test_sockets_per_client_are_limited(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_WS_MAX_SOCKETS_PER_CLIENT": "3"})
    hub.start()
    try:
        token, other = hub.token(), hub.token()

        async def scenario() -> tuple[int | None, str, int | None, int | None]:
            sockets = [await connect(hub.ws, token) for _ in range(3)]
            extra = await websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"})
            await asyncio.wait_for(extra.wait_closed(), 5)
            bystander = await connect(hub.ws, other)
            await sockets[0].close()
            await async_wait_until(lambda: hub.metric("rthub_connections") == 3, 20,
                                   "the hub did not count the closed socket out")
            again = await connect(hub.ws, token)
            await asyncio.sleep(0.3)  # a window: a refusal of the socket that took the freed place would come by now
            results = extra.close_code, extra.close_reason, bystander.close_code, again.close_code
            for ws in (*sockets[1:], bystander, again):
                await ws.close()
            return results

        code, reason, bystander_code, again_code = asyncio.run(scenario())
    finally:
        hub.stop()
    assert code == 1008 and reason == "too many sockets for this client (limit 3 per hub process)"
    assert bystander_code is None, "another client is not affected"
    assert again_code is None, "a closed socket frees its place"


FLOOD_SECONDS = "8"
FLOODER = r"""
import asyncio, json, sys, time, orjson, websockets
url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
monster, allowed = json.loads(sys.stdin.readline()), json.loads(sys.stdin.readline())
closes = {}

async def flood(index):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      max_size=None) as ws:
            await ws.recv()
            big = orjson.dumps({"type": "subscribe", "filter": monster}).decode()
            ok = orjson.dumps({"type": "subscribe", "filter": allowed}).decode()
            try:
                for n in range(9):  # just under the client frame rate, a fresh compile each time
                    await ws.send(ok)
                    await asyncio.sleep(0.11)  # pacing
                await ws.send(big)
                while True:
                    await ws.recv()
            except websockets.ConnectionClosed:
                key = f"{ws.close_code} {ws.close_reason}"
                closes[key] = closes.get(key, 0) + 1

async def main():
    await asyncio.gather(*(flood(i) for i in range(10)))
    print(json.dumps(closes), flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_ten_flooding_sockets_do_not_starve_another_client(hub: Hub) -> None:
    """The attack as reported, next to a subscriber of another client; 1,000 events at 200 events/s."""
    attacker, victim = hub.token(), hub.token()
    flooder = subprocess.Popen(
        [sys.executable, "-c", FLOODER, hub.ws, attacker, FLOOD_SECONDS], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    assert flooder.stdin is not None
    flooder.stdin.write(json.dumps(monster_filter()) + "\n" + json.dumps(largest_allowed_filter()) + "\n")
    flooder.stdin.close()
    settings = Settings(redis_url=hub.redis_url, redis_prefix=hub.prefix)
    writer = StreamWriter(redis.Redis.from_url(hub.redis_url), settings)
    lms = SimulatedLMS(seed=31)
    events = [normalise(lms.next_event()) for _ in range(1000)]
    sent_at: dict[str, float] = {}

    def publish() -> None:
        started = time.perf_counter()
        for index, event in enumerate(events):
            time.sleep(max(0.0, started + index / 200 - time.perf_counter()))  # pacing: 200 events/s
            sent_at[writer.write(event)] = time.time()

    async def scenario() -> dict[str, float]:
        ws = await connect(hub.ws, victim)
        # the flood is under way: a flooding socket is connected beside the victim's (they come and go,
        # closed for their filters, so not all ten at once)
        await async_wait_until(lambda: hub.metric("rthub_connections") >= 2, 30, "no flooding socket connected")
        publisher = threading.Thread(target=publish)
        publisher.start()
        received: dict[str, float] = {}
        try:
            async with asyncio.timeout(30):
                while len(received) < len(events):
                    frame = orjson.loads(await ws.recv())
                    received[frame["cursor"]] = time.time()
        finally:
            publisher.join()
            await ws.close()
        return received

    received = asyncio.run(scenario())
    assert flooder.stdout is not None
    out = flooder.stdout.read()
    flooder.wait(60)
    closes = json.loads(out.strip().splitlines()[-1])
    latencies = sorted(received[cursor] - sent_at[cursor] for cursor in sent_at)
    p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
    print(f"\nanother client's latency at 200 events/s under the flood: p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms over {len(latencies)} events; flood closes: {closes}")
    assert list(received) == list(sent_at), "every event, in order"
    refusals = ("1008 filter too large: 2219 rules (limit 16 rules per filter)", "1008 filter changes too frequent")
    assert closes and all(key.startswith(refusals) for key in closes), f"closed only for a named limit: {closes}"
    assert p99 < 0.5, f"p99 {p99 * 1000:.0f} ms"
