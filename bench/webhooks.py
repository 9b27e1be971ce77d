"""Webhook delivery throughput and outage recovery, against a fast local receiver.

    python -m bench.webhooks [--events 3000] [--clients 4] [--batch 100]
    python -m bench.webhooks --outage 60 [--rate 50]
    python -m bench.webhooks --cluster [--events 3000] [--clients 12]
    python -m bench.webhooks --dead-endpoint 100000
    python -m bench.webhooks --instances 2 [--events 6000] [--rate 300]

Throughput: a private redis-server, a receiver process (uvicorn, answers 200 at once), and one
`WebhookRouter` following the event stream from its saved position (`WebhookRouter.follow`), as a
hub process runs it; events are written by a separate publisher process, as the LMS writes them. Prints
deliveries/s for one client, one client with batches of 100, and N clients in parallel, each
against a baseline measured in the same run: plain httpx POSTs of the same body to the same
receiver (sequential for one client, N concurrent loops for N clients). With `--batch B`, only N
clients in parallel, each with batches of up to B events (issue 42's delivery goal: `--clients 10
--batch 100`), against N loops POSTing batches of B real frames, checking every client received
every event.

Outage: events are published at `--rate` for the whole run; the receiver is killed after 10 s and
restarted `--outage` seconds later; prints how many events were delivered (distinct webhook-id),
how many duplicates the receiver saw, and how long the backlog took to drain. The retry schedule is
`RTHUB_WEBHOOK_RETRY_SCHEDULE` if set, else 1,2,4,8,16,32,64,128.

Cluster: N clients in parallel on one redis-server, then on a private three-master Redis Cluster
(per-client outboxes spread over the shards), in the same run.

Instances: N `rthub serve` processes on one Redis and one client that sees every event, published at
`--rate`; prints each hub's CPU seconds and how many stream entries its webhook routing read
(`rthub_webhook_routed`), against the same run with one hub. Routing is leased to one instance, so
the extra instances should read nothing and cost only their idle work.

Dead endpoint: one client whose URL refuses connections, N events published; prints the Redis
memory its keys hold (`MEMORY USAGE`, exact) and `INFO memory` before and after, with the outbox cap
(`RTHUB_WEBHOOK_OUTBOX_MAXLEN`, default 10000).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import psutil
import redis.asyncio as aioredis

from bench.harness import cpu_seconds
from hub.anonymise import Anonymiser, RedisIdStore
from hub.config import Settings
from hub.delivery.webhook.router import WebhookRouter
from hub.delivery.webhook.signing import new_secret
from hub.delivery.webhook.worker import DeliveryOptions
from hub.dev.embedded import EmbeddedRedis, free_port
from hub.dev.simulator import SimulatedLMS
from hub.fanout.dispatch import Fanout
from hub.ingest import Entry
from hub.ingest.redis import RedisBroker
from hub.redis import client as redis_client
from hub.translate import TranslationSettings
from rthub_lms import keys as rkeys
from rthub_lms.backend import StreamWriter
from rthub_lms.connect import connect, discover
from rthub_lms.events import normalise
from tests.hubproc import HubProcess
from tests.servers import RedisCluster

OUTAGE_SCHEDULE = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


# --- the receiver process: counts requests, distinct webhook ids and batched events per path -------------------

RECEIVED: Counter[str] = Counter()
IDS: dict[str, set[str]] = {}
EVENTS: dict[str, set[str]] = {}


async def receiver_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if scope["method"] == "GET":
        stats = {p: {"requests": RECEIVED[p], "ids": sorted(IDS.get(p, ())), "events": len(EVENTS.get(p, ()))}
                 for p in RECEIVED}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(stats)})
        return
    RECEIVED[path] += 1
    webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
    IDS.setdefault(path, set()).add(webhook_id)
    if body.startswith(b'{"type":"batch"'):  # a batch's webhook-id names its range: count its events' cursors
        EVENTS.setdefault(path, set()).update(event["cursor"] for event in orjson.loads(body)["events"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.webhooks:receiver_app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("receiver did not start")


async def stats(port: int) -> dict:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/")).json()


# --- the hub side ------------------------------------------------------------------------------


async def add_client(redis: aioredis.Redis, settings: Settings, client_id: str, url: str, **extra: str) -> None:
    fields = {"type": "enterprise", "translator": "xapi", "delivery": "webhook", "status": "active",
              "webhook_url": url, "webhook_secret": new_secret(), "grant": "[{}]", **extra}
    await redis.sadd(rkeys.clients_key(settings), client_id)
    await redis.hset(rkeys.client_key(settings, client_id), mapping=fields)


class Hub:
    """A router following the event stream, as a hub process runs it."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        fanout = Fanout(Anonymiser(RedisIdStore(redis, settings)), TranslationSettings(settings.lms_root_url, "bench"))
        self.render = fanout.renderer.render
        self.broker = RedisBroker(redis, settings, sharded=discover(settings.redis_url).sharded)
        self.router = WebhookRouter(
            self.broker, redis, settings, self.render, options=DeliveryOptions(timeout=5, poll=0.2),
            facts=fanout.renderer.facts,
        )

    async def __aenter__(self) -> Hub:
        await self.router.start()
        await self.router.position.load()  # routing starts here, before anything is published
        self.router.follow()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.router.close()

    async def publish(self, count: int, rate: float | None = None) -> None:
        """Publish from a separate process, as the LMS does, so the hub's loop only does hub work."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.webhooks", "--publish", str(count), "--rate", str(rate or 0),
            "--redis-url", self.settings.redis_url, "--redis-prefix", self.settings.redis_prefix,
        )
        if await process.wait() != 0:
            raise SystemExit("the publisher process failed")

    def delivered(self) -> int:
        return self.router.delivery_counts()["delivered"]

    async def until_delivered(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.delivered() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.delivered()} of {count} events delivered in {timeout:g}s")
            await asyncio.sleep(0.01)

    async def sample_body(self) -> bytes:
        """A real event frame, so the baseline POSTs what the webhooks POST."""
        event = normalise(SimulatedLMS(seed=9).next_event())
        frame = await self.render(Entry("1-0", event), "xapi", "enterprise")
        assert frame is not None
        return frame.text.encode()


async def baseline(url: str, body: bytes, count: int, loops: int) -> float:
    """Plain httpx POSTs: `loops` concurrent sequential senders, `count` requests in all; per second."""
    async with httpx.AsyncClient() as client:

        async def loop(share: int) -> None:
            for _ in range(share):
                (await client.post(url, content=body, headers={"content-type": "application/json"})).raise_for_status()

        share = count // loops
        started = time.perf_counter()
        await asyncio.gather(*(loop(share) for _ in range(loops)))
        return share * loops / (time.perf_counter() - started)


async def scenario(redis_url: str, prefix: str, clients: dict[str, dict[str, str]], events: int) -> tuple[float, Hub]:
    """Deliveries per second for `events` events to every client in `clients` (id -> extra fields)."""
    settings = Settings(redis_url=redis_url, redis_prefix=prefix, webhook_allow_private=True)
    redis = redis_client(redis_url)
    for client_id, extra in clients.items():
        await add_client(redis, settings, client_id, **extra)
    async with Hub(redis, settings) as hub:
        started = time.perf_counter()
        await hub.publish(events)
        await hub.until_delivered(events * len(clients), 600)
        rate = events * len(clients) / (time.perf_counter() - started)
    await redis.aclose()
    return rate, hub


async def throughput(redis_url: str, port: int, events: int, clients: int, batch: int = 0) -> None:
    base = f"http://127.0.0.1:{port}"
    if batch:
        await parallel_batches(redis_url, port, events, clients, batch)
        return
    single, hub = await scenario(redis_url, "b1:", {"one": {"url": f"{base}/one"}}, events)
    body = await hub.sample_body()
    one_base = await baseline(f"{base}/baseline1", body, min(events, 3000), 1)
    received = (await stats(port))["/one"]
    print(f"body {len(body)} bytes; {events} events; receiver saw {received['requests']} requests, "
          f"{len(received['ids'])} distinct webhook-ids on /one")
    print(f"1 client, 1 event per POST : {single:8.0f} deliveries/s | baseline httpx sequential "
          f"{one_base:8.0f} req/s | ratio {single / one_base:.2f}")
    batch = {"url": f"{base}/batch", "webhook_batch_max": "100", "webhook_batch_wait": "0.05"}
    batched, _ = await scenario(redis_url, "b2:", {"batch": batch}, events)
    batch_requests = (await stats(port))["/batch"]["requests"]
    print(f"1 client, batches of <=100 : {batched:8.0f} events/s in {batch_requests} POSTs | "
          f"ratio to the sequential baseline {batched / one_base:.2f}")
    many = {f"c{n}": {"url": f"{base}/c{n}"} for n in range(clients)}
    parallel, _ = await scenario(redis_url, "b3:", many, events)
    many_base = await baseline(f"{base}/baseline{clients}", body, min(events * clients, 6000), clients)
    print(f"{clients} clients in parallel    : {parallel:8.0f} deliveries/s | baseline httpx x{clients} concurrent "
          f"{many_base:8.0f} req/s | ratio {parallel / many_base:.2f}")


async def parallel_batches(redis_url: str, port: int, events: int, clients: int, batch: int) -> None:
    """N clients in parallel, each with batches of up to `batch` events, against N concurrent plain POST
    loops of the same batch body (events/s = POSTs/s x `batch`); every client must get every event."""
    base = f"http://127.0.0.1:{port}"
    fields = {"webhook_batch_max": str(batch), "webhook_batch_wait": "0.05"}
    many = {f"p{n}": {"url": f"{base}/p{n}", **fields} for n in range(clients)}
    rate, hub = await scenario(redis_url, "b4:", many, events)
    frame = (await hub.sample_body()).decode()
    body = ('{"type":"batch","events":[' + ",".join([frame] * batch) + "]}").encode()
    many_base = batch * await baseline(f"{base}/baseline{clients}", body, min(events * clients // batch, 2000), clients)
    received = await stats(port)
    missing = sum(events - received.get(f"/p{n}", {"events": 0})["events"] for n in range(clients))
    requests = sum(received.get(f"/p{n}", {"requests": 0})["requests"] for n in range(clients))
    print(f"{clients} clients, batches of <={batch}: {rate:8.0f} delivered events/s in {requests} POSTs, "
          f"{missing} events missing | baseline httpx x{clients} concurrent POSTs of {batch} events "
          f"{many_base:8.0f} events/s | "
          f"ratio {rate / many_base:.2f}")


async def on_cluster(redis_url: str, cluster_url: str, port: int, events: int, clients: int) -> None:
    """N clients in parallel on one server, then on the cluster."""
    base = f"http://127.0.0.1:{port}"
    for name, url in (("one redis-server", redis_url), ("3-master Redis Cluster", cluster_url)):
        many = {f"c{n}": {"url": f"{base}/c{n}"} for n in range(clients)}
        rate, _ = await scenario(url, f"{name[0]}{clients}:", many, events)
        print(f"{name:<24}: {clients} clients x {events} events, {rate:8.0f} deliveries/s")


async def outage(redis_url: str, port: int, seconds: float, rate: float, receiver: subprocess.Popen[bytes]) -> None:
    schedule = Settings.from_env().webhook_retry_schedule if os.environ.get("RTHUB_WEBHOOK_RETRY_SCHEDULE") else None
    settings = Settings(
        redis_url=redis_url, redis_prefix="outage:", webhook_allow_private=True,
        webhook_retry_schedule=schedule or OUTAGE_SCHEDULE,
    )
    redis = redis_client(redis_url)
    await add_client(redis, settings, "acme", f"http://127.0.0.1:{port}/acme")
    total = int(rate * (seconds + 20))
    print(f"schedule {settings.webhook_retry_schedule}; publishing {total} events at {rate:g}/s; "
          f"receiver down from t=10s for {seconds:g}s")
    async with Hub(redis, settings) as hub:
        publishing = asyncio.create_task(hub.publish(total, rate))
        await asyncio.sleep(10)
        before = (await stats(port)).get("/acme", {"requests": 0, "ids": []})
        receiver.kill()
        receiver.wait()
        await asyncio.sleep(seconds)
        receiver = start_receiver(port)
        restarted = time.monotonic()
        await publishing
        await hub.until_delivered(total, seconds + 600)
        drained = time.monotonic() - restarted
        after = (await stats(port)).get("/acme", {"requests": 0, "ids": []})
        counts = hub.router.delivery_counts()
    receiver.terminate()
    distinct = set(before["ids"]) | set(after["ids"])
    requests = before["requests"] + after["requests"]
    print(f"delivered {len(distinct)}/{total} events ({100 * len(distinct) / total:.1f} %), "
          f"duplicates seen by the receiver {requests - len(distinct)}, "
          f"failed attempts {counts['failed_attempts']}, dead letters {counts['dead_lettered']}, "
          f"backlog drained {drained:.1f}s after the receiver came back")
    await redis.aclose()


async def dead_endpoint(redis_url: str, events: int) -> None:
    """Redis memory held for one client whose endpoint refuses every connection, after `events` events."""
    settings = Settings.from_env(redis_url=redis_url, redis_prefix="dead:", webhook_allow_private=True)
    redis_client = aioredis.Redis.from_url(redis_url)
    await add_client(redis_client, settings, "dead", f"http://127.0.0.1:{free_port()}/nobody")
    before = (await redis_client.info("memory"))["used_memory"]
    async with Hub(redis_client, settings) as hub:
        started = time.perf_counter()
        await hub.publish(events)
        while hub.router.counts["routed"] < events:
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        client_keys = [
            rkeys.outbox(settings, "dead"), rkeys.requeue(settings, "dead"), rkeys.state(settings, "dead"),
            rkeys.health(settings, "dead"), rkeys.lease(settings, "dead"), rkeys.deadletters(settings, "dead"),
        ]
        held = {key: await redis_client.memory_usage(key, samples=0) or 0 for key in client_keys}
        queued = await redis_client.xlen(rkeys.outbox(settings, "dead"))
        health = await redis_client.hgetall(rkeys.health(settings, "dead"))
        stream = await redis_client.memory_usage(rkeys.stream_key(settings), samples=0)
        after = (await redis_client.info("memory"))["used_memory"]
    await redis_client.aclose()
    print(f"{events} events routed in {elapsed:.1f}s to one dead endpoint, outbox cap {settings.webhook_outbox_maxlen}")
    print(f"outbox holds {queued} entries; overflowed (dropped, counted) {int(health.get(b'overflowed', 0))}; "
          f"failed attempts {int(health.get(b'failed_attempts', 0))}")
    for key, size in held.items():
        print(f"  MEMORY USAGE {key}: {size / 1e6:.2f} MB")
    print(f"the endpoint's keys: {sum(held.values()) / 1e6:.2f} MB in all | the LMS event stream itself "
          f"{(stream or 0) / 1e6:.1f} MB | INFO used_memory {before / 1e6:.1f} -> {after / 1e6:.1f} MB")


def hub_process(hub: HubProcess) -> psutil.Process:
    assert hub.process is not None
    return psutil.Process(hub.process.pid)


def instances_round(redis_url: str, port: int, count: int, events: int, rate: float) -> tuple[list[float], list[int]]:
    """CPU seconds and routed entries of each of `count` hub processes while `events` are delivered."""
    prefix = f"i{count}:"
    env = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}
    hubs = [HubProcess(redis_url, prefix, env=env) for _ in range(count)]
    try:
        for hub in hubs:
            hub.start()
        path = f"/instances{count}"
        hubs[0].client(type="enterprise", delivery="webhook", webhook_url=f"http://127.0.0.1:{port}{path}")
        time.sleep(2)  # every hub has loaded the client, one holds the routing lease
        before = [cpu_seconds(hub_process(hub)) for hub in hubs]
        publish_events(redis_url, prefix, events, rate)
        deadline = time.monotonic() + 120
        while len(asyncio.run(stats(port)).get(path, {"ids": []})["ids"]) < events:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} hubs: not every event was delivered in time")
            time.sleep(0.2)
        cpu = [cpu_seconds(hub_process(hub)) - start for hub, start in zip(hubs, before, strict=True)]
        return cpu, [int(hub.metric("rthub_webhook_routed_total")) for hub in hubs]
    finally:
        for hub in hubs:
            hub.stop()


def instances(redis_url: str, port: int, count: int, events: int, rate: float) -> None:
    print(f"{events} events at {rate:g}/s to one webhook client that sees every event")
    rounds = {n: instances_round(redis_url, port, n, events, rate) for n in (1, count)}
    for n, (cpu, read) in rounds.items():
        per_hub = ", ".join(f"{seconds:.2f} s / {entries} routed" for seconds, entries in zip(cpu, read, strict=True))
        print(f"{n} hub(s): CPU {sum(cpu):.2f} s in all ({per_hub})")
    total = sum(rounds[count][0]) / sum(rounds[1][0])
    readers = sum(1 for entries in rounds[count][1] if entries)
    print(f"goal: {count} hubs' CPU / 1 hub's = {total:.2f}x; "
          f"hubs that read the stream for webhooks: {readers} of {count}")


def publish_events(redis_url: str, prefix: str, count: int, rate: float) -> None:
    """The LMS side: `RealtimeBackend`-style writes, batched when there is no rate to keep."""
    writer = StreamWriter(connect(discover(redis_url)), Settings(redis_url=redis_url, redis_prefix=prefix))
    lms = SimulatedLMS(seed=5)
    started = time.monotonic()
    if not rate:
        for start in range(0, count, 100):
            writer.write_many([normalise(lms.next_event()) for _ in range(min(100, count - start))])
        return
    for index in range(count):
        writer.write(normalise(lms.next_event()))
        time.sleep(max(0.0, (index + 1) / rate - (time.monotonic() - started)))


def main() -> int:
    parser = argparse.ArgumentParser(description="webhook delivery benchmark")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, help="throughput: only N clients in parallel, batches of up to this many")
    parser.add_argument("--outage", type=float, help="run the outage scenario with this many seconds down")
    parser.add_argument("--rate", type=float, help="events per second (outage: 50, instances: 300)")
    parser.add_argument("--cluster", action="store_true", help="N clients on one server vs a 3-master cluster")
    parser.add_argument("--instances", type=int, help="N rthub serve processes against one, one webhook client")
    parser.add_argument("--dead-endpoint", type=int, help="memory held by one dead endpoint after this many events")
    parser.add_argument("--publish", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish is not None:
        publish_events(args.redis_url, args.redis_prefix, args.publish, args.rate or 0.0)
        return 0
    port = free_port()
    with EmbeddedRedis() as redis_server:
        receiver = start_receiver(port)
        try:
            if args.cluster:
                with tempfile.TemporaryDirectory(prefix="rthub-bench-cluster-") as workdir:
                    cluster = RedisCluster(Path(workdir))
                    try:
                        cluster.start()
                        asyncio.run(on_cluster(redis_server.url, cluster.url, port, args.events, args.clients))
                    finally:
                        cluster.stop()
            elif args.instances:
                instances(redis_server.url, port, args.instances, args.events, args.rate or 300.0)
            elif args.dead_endpoint:
                asyncio.run(dead_endpoint(redis_server.url, args.dead_endpoint))
            elif args.outage:
                asyncio.run(outage(redis_server.url, port, args.outage, args.rate or 50.0, receiver))
            else:
                asyncio.run(throughput(redis_server.url, port, args.events, args.clients, args.batch or 0))
        finally:
            if receiver.poll() is None:
                receiver.terminate()
                receiver.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
