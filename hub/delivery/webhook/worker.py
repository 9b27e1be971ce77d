"""One client's delivery loop: hold the lease, drain the client's queue in order, sign, POST, retry.

While this instance holds the client's lease it: backfills after socket handoffs (websocket+webhook
clients), takes the next batch (the retry state's batch if one is in flight, else the head of the
requeue stream, else of the outbox), waits for its next attempt time, POSTs it, and then acknowledges
it (2xx), schedules a retry, dead-letters it (schedule exhausted) or disables the endpoint (410).
Each client has its own task and HTTP connection pool, so a failing endpoint only delays itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.delivery.webhook.clients import WebhookClient, disable
from hub.delivery.webhook.handoff import Render, backfill
from hub.delivery.webhook.health import record_dead_letters, record_delivery, record_failure
from hub.delivery.webhook.lease import Lease, LeaseLost
from hub.delivery.webhook.outbox import Item, Outbox, field
from hub.delivery.webhook.schedule import parse_retry_after, retry_delay
from hub.delivery.webhook.signing import message_id
from hub.delivery.webhook.ssrf import Target, UnsafeURL, read_at_most, resolve
from hub.ingest.redis import RedisBroker
from rthub_lms import keys

log = logging.getLogger("rthub.webhooks.worker")

Batch = tuple[list[Item], int, float]

DEAD_LETTER_PAGE = 500
PREFETCH = 100
RESOLVE_TTL = 30.0
USER_AGENT = "rthub-webhooks/0.1"


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """Timing knobs; the defaults suit production, tests shrink them."""

    timeout: float = 10.0
    lease_ttl_ms: int = 10_000
    poll: float = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: delivered, or why not (and what the receiver asked for)."""

    delivered: bool
    reason: str = ""
    gone: bool = False
    retry_after: float | None = None


def batch_body(items: list[Item]) -> str:
    """The contract's batch body, built from the already-encoded event frames."""
    return '{"type":"batch","events":[' + ",".join(item.body for item in items) + "]}"


class DeliveryWorker:
    def __init__(
        self,
        client: WebhookClient,
        redis: aioredis.Redis,
        settings: Settings,
        render: Render,
        options: DeliveryOptions,
        counts: Counter[str],
    ) -> None:
        self.client = client
        self._redis = redis
        self._settings = settings
        self._render = render
        self._options = options
        self.counts = counts
        self._outbox = Outbox(redis, settings)
        self._broker = RedisBroker(redis, settings)
        self._wake = asyncio.Event()
        self._http = httpx.AsyncClient(
            timeout=options.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._prefetched: list[Item] = []
        self._inflight: Batch | None = None
        self._target: tuple[str, Target, float] | None = None
        cid = client.client_id
        self._state_key = keys.state(settings, cid)
        self._deadletters_key = keys.deadletters(settings)
        self._lease = Lease(redis, keys.lease(settings, cid), options.lease_ttl_ms)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"rthub-webhook-{self.client.client_id}")

    def wake(self) -> None:
        """Something was queued for this client: stop idling."""
        self._wake.set()

    async def close(self) -> None:
        """Stop delivering (a flag as well as a cancel: redis-py may swallow a cancellation)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        """Compete for the lease; deliver while holding it; start over when it is lost."""
        while not self._stopping:
            try:
                if not await self._lease.acquire():
                    await asyncio.sleep(self._options.lease_ttl_ms / 2000)
                    continue
            except RedisError as exc:
                log.warning("client %s: lease unavailable: %s", self.client.client_id, exc)
                await asyncio.sleep(self._options.poll)
                continue
            deliver = asyncio.create_task(self._deliver())
            keeper = asyncio.create_task(self._keep_lease())
            try:
                await asyncio.wait({deliver, keeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (deliver, keeper):
                    task.cancel()
                results = await asyncio.gather(deliver, keeper, return_exceptions=True)
                with contextlib.suppress(RedisError):
                    await self._lease.release()
            if deliver.done() and not deliver.cancelled() and deliver.exception() is None:
                return
            failure = next((r for r in results if isinstance(r, Exception) and not isinstance(r, LeaseLost)), None)
            if failure is not None:
                log.warning("client %s: delivery interrupted: %r", self.client.client_id, failure)
                await asyncio.sleep(self._options.poll)

    async def _keep_lease(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._options.lease_ttl_ms / 3000)
            if not await self._lease.renew():
                raise LeaseLost(self._lease.key)

    async def _deliver(self) -> None:
        """Deliver until the lease is lost (raises), the endpoint is gone or the worker stops (returns).

        While the lease is held nobody else moves this client's queue, so the retry state is read
        from Redis once per lease, and the queue head is read ahead (`PREFETCH` items at a time).
        """
        self._prefetched = []
        self._inflight = await self._saved_batch()
        next_handoff_check = 0.0
        while not self._stopping:
            if self.client.fallback and time.monotonic() >= next_handoff_check:
                self.counts["backfilled"] += await backfill(
                    self._redis, self._settings, self.client, self._render, self._outbox, self._broker
                )
                next_handoff_check = time.monotonic() + self._options.poll
            items, attempts, next_at = self._inflight or await self._next_batch()
            if not items:
                await self._idle(self._options.poll)
                continue
            delay = next_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            outcome = await self._attempt(items)
            await self._settle(items, attempts + 1, outcome)
            if outcome.gone:
                return

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _saved_batch(self) -> Batch | None:
        """The batch a previous lease holder left in flight (items, attempts, next attempt time)."""
        state = await self._redis.hgetall(self._state_key)
        if not state:
            return None
        source, first, last = (field(state, name) or "" for name in ("source", "first", "last"))
        items = await self._outbox.span(source, first, last, self.client.batch_max)
        if not items:
            await self._redis.delete(self._state_key)
            return None
        return items, int(field(state, "attempts") or 0), float(field(state, "next_at") or 0)

    async def _next_batch(self) -> Batch:
        """A fresh batch from the head of the queue, waiting up to `batch_wait` for it to fill."""
        limit = self.client.batch_max
        if len(self._prefetched) < limit:
            self._prefetched = await self._outbox.head(self.client.client_id, max(limit, PREFETCH))
            if self._prefetched and len(self._prefetched) < limit and self.client.batch_wait > 0:
                deadline = time.monotonic() + self.client.batch_wait
                while len(self._prefetched) < limit and (left := deadline - time.monotonic()) > 0:
                    await self._idle(left)
                    self._prefetched = await self._outbox.head(self.client.client_id, max(limit, PREFETCH))
        items, self._prefetched = self._prefetched[:limit], self._prefetched[limit:]
        return items, 0, 0.0

    async def _attempt(self, items: list[Item]) -> Outcome:
        client = self.client
        body = batch_body(items) if client.batch_max > 1 else items[0].body
        try:
            target = await self._resolve(client.url)
        except UnsafeURL as exc:
            return Outcome(False, f"refused URL: {exc}")
        headers = client.signer.headers(message_id([item.cursor for item in items]), body, time.time())
        headers.update({"content-type": "application/json", "user-agent": USER_AGENT, "host": target.host})
        extensions = {"sni_hostname": target.sni} if target.sni else None
        try:
            async with asyncio.timeout(self._options.timeout):  # httpx's timeout is per phase, this is the total
                async with self._http.stream(
                    "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
                ) as response:
                    await read_at_most(response)
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, f"timeout after {self._options.timeout:g}s")
        except httpx.HTTPError as exc:
            self._target = None
            return Outcome(False, f"connection error: {exc.__class__.__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Outcome(True)
        if response.status_code == 410:
            return Outcome(False, "410 Gone: endpoint disabled", gone=True)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Outcome(False, f"HTTP {response.status_code}", retry_after=retry_after)

    async def _resolve(self, url: str) -> Target:
        """The checked, pinned target of `url`, re-resolved every `RESOLVE_TTL` s and after connection errors."""
        now = time.monotonic()
        if self._target is None or self._target[0] != url or self._target[2] < now:
            self._target = (url, await resolve(url, self._settings.webhook_allow_private), now + RESOLVE_TTL)
        return self._target[1]

    async def _settle(self, items: list[Item], attempts: int, outcome: Outcome) -> None:
        cid = self.client.client_id
        source = items[0].source
        ids = [item.id for item in items]
        self._inflight = None
        if outcome.delivered:
            await self._lease.finish(source, self._state_key, self._deadletters_key, ids)
            self.counts["delivered"] += len(items)
            self.counts["requests"] += 1
            await record_delivery(self._redis, self._settings, cid, len(items))
            return
        self.counts["failed_attempts"] += 1
        await record_failure(self._redis, self._settings, cid, outcome.reason)
        log.info("client %s: attempt %d for %s failed: %s", cid, attempts, ids[0], outcome.reason)
        if outcome.gone:
            # Park the queue first: announcing the change makes the router stop this worker.
            await self._dead_letter_everything(outcome.reason, attempts)
            await disable(self._redis, self._settings, cid, outcome.reason)
            return
        delay = retry_delay(self._settings.webhook_retry_schedule, attempts, outcome.retry_after)
        if delay is None:
            reason = f"{outcome.reason} (gave up after {attempts} attempts)"
            moved = await self._dead_letter(source, ids, reason, attempts)
            self.counts["dead_lettered"] += moved
            await record_dead_letters(self._redis, self._settings, cid, moved)
            return
        next_at = time.time() + delay
        await self._lease.save_state(
            self._state_key,
            {"source": source, "first": ids[0], "last": ids[-1], "attempts": attempts,
             "next_at": next_at, "error": outcome.reason},
        )
        self._inflight = (items, attempts, next_at)

    async def _dead_letter(self, source: str, ids: list[str], reason: str, attempts: int) -> int:
        return await self._lease.finish(
            source, self._state_key, self._deadletters_key, ids, reason=reason, client_id=self.client.client_id,
            attempts=attempts, failed_at_ms=int(time.time() * 1000), url=self.client.url,
        )

    async def _dead_letter_everything(self, reason: str, attempts: int) -> None:
        """The endpoint is gone: park everything queued for it where `deadletters replay` can find it."""
        cid = self.client.client_id
        for source in (keys.requeue(self._settings, cid), keys.outbox(self._settings, cid)):
            while rows := await self._redis.xrange(source, count=DEAD_LETTER_PAGE):
                ids = [r.decode() if isinstance(r, bytes) else r for r, _ in rows]
                moved = await self._dead_letter(source, ids, reason, attempts)
                self.counts["dead_lettered"] += moved
                await record_dead_letters(self._redis, self._settings, cid, moved)
                attempts = 0
