"""One client's delivery loop: hold the lease, drain the client's queue in order, hand batches to a sender.

While this instance holds the client's lease it takes the next batch (the retry state's batch if one
is in flight, else the head of the requeue stream, else of the outbox — for websocket+webhook clients
minus what their sockets covered, see `handoff`), waits for its next attempt time, gives it to the
`Sender` (one signed POST), and then acknowledges it (2xx: retried until Redis takes it, never by
posting again), schedules a retry, dead-letters it
(schedule exhausted, or the receiver aborted the message) or disables the endpoint (410, or failing
for `RTHUB_WEBHOOK_DISABLE_AFTER` seconds with no success: the breaker) with its backlog dead-lettered.
Each client has its own task and HTTP connection pool, so a failing endpoint only delays itself.
LRS and Caliper-endpoint clients bring a `sender` (`hub/delivery/webhook/formats/`) that builds their
requests and reads their answers; a client it pauses (401/403) keeps its queue until it is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.clients import WebhookClient, disable, pause
from hub.delivery.webhook.deadletters import write_gap
from hub.delivery.webhook.handoff import Handoff
from hub.delivery.webhook.health import (
    record_already_stored,
    record_attempt,
    record_dead_letters,
    record_failure,
    record_gap,
)
from hub.delivery.webhook.lease import Lease, LeaseLost
from hub.delivery.webhook.outbox import Item, Outbox, field
from hub.delivery.webhook.outcome import Outcome
from hub.delivery.webhook.position import routed_upto
from hub.delivery.webhook.schedule import retry_delay
from hub.delivery.webhook.sender import Sender, WebhookSender
from hub.ingest import cursor_key
from hub.redis import Backoff, is_transient
from rthub_lms import keys

log = logging.getLogger("rthub.webhooks.worker")

Batch = tuple[list[Item], int, float]

DEAD_LETTER_PAGE = 500
PREFETCH = 100


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """Timing knobs; the defaults suit production, tests shrink them."""

    timeout: float = 10.0
    lease_ttl_ms: int = 10_000
    poll: float = 1.0
    idle_tip_every: float = 1.0  # how often a router with nothing to route notes the stream's newest cursor


class DeliveryWorker:
    def __init__(
        self,
        client: WebhookClient,
        redis: aioredis.Redis,
        settings: Settings,
        options: DeliveryOptions,
        counts: Counter[str],
        sender: Sender | None = None,
    ) -> None:
        self.client = client
        self._redis = redis
        self._settings = settings
        self._options = options
        self.counts = counts
        self._sender = sender or WebhookSender(
            options.timeout, settings.private_access, on_attempt=self._log_attempt
        )
        self._outbox = Outbox(redis, settings)
        self._handoff = Handoff(redis, settings, client.client_id)
        self._wake = asyncio.Event()
        self._recheck = asyncio.Event()
        self._posted = 0  # POSTs reported to the delivery log: an attempt that made none was refused before
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._prefetched: list[Item] = []
        self._inflight: Batch | None = None
        self._unacknowledged: tuple[str, list[str]] | None = None
        cid = client.client_id
        self._state_key = keys.state(settings, cid)
        self._outbox_key = keys.outbox(settings, cid)
        self._finish_keys = (keys.deadletters(settings, cid), keys.health(settings, cid))
        self._lease = Lease(redis, keys.lease(settings, cid), options.lease_ttl_ms)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"rthub-webhook-{self.client.client_id}")

    def wake(self) -> None:
        """Something was queued for this client: stop idling."""
        self._wake.set()

    def recheck(self) -> None:
        """The client changed, or an admin asked to retry now: a batch waiting for its next attempt reads
        the retry state again."""
        self._recheck.set()

    async def close(self) -> None:
        """Stop delivering (a flag as well as a cancel: redis-py may swallow a cancellation)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._sender.aclose()

    async def _run(self) -> None:
        """Compete for the lease; deliver while holding it; start over when it is lost. While Redis is
        away the waits between tries grow from `poll` (`Backoff`)."""
        backoff = Backoff(self._options.poll)
        while not self._stopping:
            try:
                acquired = await self._lease.acquire()
            except RedisError as exc:
                delay = backoff.next_delay()
                log.warning("client %s: lease unavailable: %s", self.client.client_id, exc)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if not acquired:
                await asyncio.sleep(self._options.lease_ttl_ms / 2000)
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
                level = logging.WARNING if is_transient(failure) else logging.ERROR
                log.log(level, "client %s: delivery interrupted: %r", self.client.client_id, failure)
                await asyncio.sleep(backoff.next_delay())

    async def _keep_lease(self) -> None:
        """Renew every third of the ttl; a renewal Redis refuses (OOM, away) is tried again while the
        last one still holds, so a short refusal does not interrupt an acknowledgement being retried."""
        renewed = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(self._options.lease_ttl_ms / 3000)
            try:
                held = await self._lease.renew()
            except RedisError:
                if time.monotonic() - renewed < self._options.lease_ttl_ms / 1000:
                    continue
                raise
            if not held:
                raise LeaseLost(self._lease.key)
            renewed = time.monotonic()

    async def _deliver(self) -> None:
        """Deliver until the lease is lost (raises), the endpoint is gone or the worker stops (returns).

        While the lease is held nobody else moves this client's queue, so the retry state is read
        from Redis once per lease, and the queue head is read ahead (`PREFETCH` items at a time).
        """
        self._prefetched = []
        if self._unacknowledged is not None:  # a 2xx this instance could not record before it lost the lease
            await self._acknowledge(*self._unacknowledged)
        self._inflight = await self._saved_batch()
        while not self._stopping:
            if self.client.paused:
                await self._idle(self._options.poll)
                continue
            items, attempts, next_at = self._inflight or await self._next_batch()
            if items and not attempts and self.client.fallback and items[0].source == self._outbox_key:
                items = await self._uncovered(items)
            if not items:
                await self._idle(self._options.poll)
                continue
            if next_at > time.time() and not await self._wait_for_retry(next_at):
                continue  # paused meanwhile: the batch stays in flight
            posted = self._posted
            outcome = await self._sender.send(self.client, items)
            if not outcome.delivered and self._posted == posted:
                await self._log_refusal(outcome.reason)
            if await self._settle(items, attempts + 1, outcome):
                return

    async def _uncovered(self, items: list[Item]) -> list[Item]:
        """The part of a fresh outbox batch no socket of the client covers; covered events are dropped."""
        split = (await self._handoff.covers()).split(items + self._prefetched)
        if split.drop:
            ids = [item.id for item in split.drop]
            self.counts["covered_by_socket"] += await self._lease.finish(
                self._outbox_key, self._state_key, self._finish_keys, ids
            )
        await self._handoff.forget(split.finished_ranges)
        self._prefetched = []
        return split.deliver[: self.client.batch_max]

    async def _wait_for_retry(self, next_at: float) -> bool:
        """Sleep until the batch in flight is due; an admin's "retry now" (`hub.delivery.webhook.retry`)
        brings its time forward in the retry state and sends a change notice, which `recheck` turns into
        a fresh read here. False when the client was paused meanwhile."""
        while (left := next_at - time.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), left)
            if self._recheck.is_set():
                self._recheck.clear()
                if self.client.paused:
                    return False
                saved = field(await self._redis.hgetall(self._state_key), "next_at")
                next_at = min(next_at, float(saved or 0))
        if self._inflight is not None:
            self._inflight = (self._inflight[0], self._inflight[1], next_at)
        return True

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
        limit, cid = self.client.batch_max, self.client.client_id
        if len(self._prefetched) < limit:
            self._prefetched = await self._outbox.head(cid, max(limit, PREFETCH), self._prefetched)
            if self._prefetched and len(self._prefetched) < limit and self.client.batch_wait > 0:
                deadline = time.monotonic() + self.client.batch_wait
                while len(self._prefetched) < limit and (left := deadline - time.monotonic()) > 0:
                    await self._idle(left)
                    self._prefetched = await self._outbox.head(cid, max(limit, PREFETCH), self._prefetched)
        items, self._prefetched = self._prefetched[:limit], self._prefetched[limit:]
        return items, 0, 0.0

    async def _settle(self, items: list[Item], attempts: int, outcome: Outcome) -> bool:
        """Move the client's queue on after one attempt; True when the endpoint was disabled."""
        cid = self.client.client_id
        source = items[0].source
        self._inflight = None
        if outcome.rejected or outcome.settled or outcome.already_stored:
            items = await self._settle_parts(items, attempts, outcome)
            if not items:
                return False
        ids = [item.id for item in items]
        if outcome.delivered:
            await self._acknowledge(source, ids)
            self.counts["delivered"] += len(items)
            self.counts["requests"] += 1
            return False
        self.counts["failed_attempts"] += 1
        failing_since = await record_failure(self._redis, self._settings, cid, outcome.reason)
        log.info("client %s: attempt %d for %s failed: %s", cid, attempts, ids[0], outcome.reason)
        if outcome.paused:
            # Keep the batch in flight with the attempt uncounted: fixing the credentials resumes it.
            self.client = replace(self.client, paused=True, paused_for="endpoint", pause_reason=outcome.reason)
            await self._lease.save_state(
                self._state_key,
                {"source": source, "first": ids[0], "last": ids[-1], "attempts": attempts - 1, "next_at": 0,
                 "error": outcome.reason},
            )
            self._inflight = (items, attempts - 1, 0.0)
            await pause(self._redis, self._settings, cid, outcome.reason)
            return False
        failing_for = time.time() - failing_since
        if outcome.gone or failing_for >= self._settings.webhook_disable_after:
            reason = outcome.reason if outcome.gone else (
                f"endpoint disabled: failing for {failing_for:.0f}s with no success (last: {outcome.reason})"
            )
            # Park the queue first: announcing the change makes the router stop this worker.
            queued_upto = await self._dead_letter_everything(reason, attempts)
            gap_end = await self._unrouted_gap(reason, queued_upto)
            await disable(self._redis, self._settings, cid, reason, gap_end)
            self.counts["endpoints_disabled"] += 1
            return True
        delay = None if outcome.abort else retry_delay(
            self._settings.webhook_retry_schedule, attempts, outcome.retry_after
        )
        if delay is None:
            reason = outcome.reason if outcome.abort else f"{outcome.reason} (gave up after {attempts} attempts)"
            moved = await self._dead_letter(source, ids, reason, attempts)
            self.counts["dead_lettered"] += moved
            await record_dead_letters(self._redis, self._settings, cid, moved)
            return False
        next_at = time.time() + delay
        await self._lease.save_state(
            self._state_key,
            {"source": source, "first": ids[0], "last": ids[-1], "attempts": attempts,
             "next_at": next_at, "error": outcome.reason},
        )
        self._inflight = (items, attempts, next_at)
        return False

    async def _settle_parts(self, items: list[Item], attempts: int, outcome: Outcome) -> list[Item]:
        """Dead-letter the items the endpoint refused, acknowledge those it stored; returns the rest.

        On a delivered outcome the rest is exactly what was stored, acknowledged by the caller.
        """
        cid = self.client.client_id
        source = items[0].source
        rejected = dict(outcome.rejected)
        for item_id, reason in outcome.rejected:
            moved = await self._dead_letter(source, [item_id], reason, attempts)
            self.counts["dead_lettered"] += moved
            await record_dead_letters(self._redis, self._settings, cid, moved)
        if outcome.already_stored:
            self.counts["already_stored"] += outcome.already_stored
            await record_already_stored(self._redis, self._settings, cid, outcome.already_stored)
        stored = set() if outcome.delivered else set(outcome.settled)
        if stored:
            await self._acknowledge(source, list(stored))
            self.counts["delivered"] += len(stored)
        return [item for item in items if item.id not in rejected and item.id not in stored]

    async def _acknowledge(self, source: str, ids: list[str]) -> None:
        """Remove delivered `ids` from their queue (and record the delivery), retrying while Redis refuses
        (OOM, READONLY, away): the receiver has the events, so posting them again is what must not happen.
        If the lease is lost meanwhile, the acknowledgement stays pending and is the first thing done when
        this instance holds the lease again (another instance taking over in between sends them again)."""
        self._unacknowledged = (source, ids)
        backoff = Backoff()
        while True:
            try:
                await self._lease.finish(source, self._state_key, self._finish_keys, ids, delivered=True)
                break
            except RedisError as exc:
                self.counts["ack_retries"] += 1
                delay = backoff.next_delay()
                log.warning("client %s: acknowledgement of %s refused (%s); retrying in %.2fs",
                            self.client.client_id, ids[0], exc, delay)
                await asyncio.sleep(delay)
        self._unacknowledged = None

    async def _log_attempt(self, status: int | None, latency: float, error: str) -> None:
        """Every HTTP attempt goes to the client's delivery log (admin page and API); a log entry Redis
        refuses is dropped, so it never turns a 2xx into a failure that posts the events again."""
        self._posted += 1
        try:
            await record_attempt(self._redis, self._settings, self.client.client_id, status, latency, error)
        except RedisError as exc:
            log.warning("client %s: delivery log entry dropped: %s", self.client.client_id, exc)

    async def _log_refusal(self, reason: str) -> None:
        """An attempt that failed before any POST (DNS, the address guard, an unusable configuration) is
        in the delivery log too, so the log and the failure count tell the same story (dropped, as above,
        when Redis refuses it)."""
        try:
            await record_attempt(self._redis, self._settings, self.client.client_id, None, 0.0, reason, sent=False)
        except RedisError as exc:
            log.warning("client %s: delivery log entry dropped: %s", self.client.client_id, exc)

    async def _dead_letter(self, source: str, ids: list[str], reason: str, attempts: int) -> int:
        return await self._lease.finish(
            source, self._state_key, self._finish_keys, ids, reason=reason, client_id=self.client.client_id,
            attempts=attempts, url=self.client.url, cap=self._settings.webhook_deadletters_maxlen,
        )

    async def _unrouted_gap(self, reason: str, queued_upto: str | None) -> str:
        """What routing has not reached yet will never be queued for a disabled endpoint (the router drops
        it on the notice): one `gap` dead letter names that range, so it is reported, not lost in silence.
        Routing stands at least at the newest event it queued for the client (`queued_upto`). Returns the
        range's end, the stream tip read here: enabling the client again catches it up from there, so
        nothing published between this read and the disable falls between the two."""
        cid = self.client.client_id
        stands = await routed_upto(self._redis, self._settings, cid)
        if queued_upto is not None and (stands is None or cursor_key(queued_upto) > cursor_key(stands)):
            stands = queued_upto
        tip = await ClientRegistry(self._redis, self._settings).stream_tip()
        if stands is not None and cursor_key(stands) < cursor_key(tip):
            await write_gap(self._redis, self._settings, cid, self.client.url, stands, tip,
                            f"not routed yet when the endpoint was disabled: {reason}")
            await record_gap(self._redis, self._settings, cid)
        return tip

    async def _dead_letter_everything(self, reason: str, attempts: int) -> str | None:
        """The endpoint is gone: park everything queued for it where `deadletters replay` can find it;
        returns the newest outbox entry parked (what routing had queued up to), None if none."""
        cid = self.client.client_id
        newest = None
        for source in (keys.requeue(self._settings, cid), keys.outbox(self._settings, cid)):
            while rows := await self._redis.xrange(source, count=DEAD_LETTER_PAGE):
                ids = [r.decode() if isinstance(r, bytes) else r for r, _ in rows]
                if source == keys.outbox(self._settings, cid):
                    newest = ids[-1]
                moved = await self._dead_letter(source, ids, reason, attempts)
                self.counts["dead_lettered"] += moved
                await record_dead_letters(self._redis, self._settings, cid, moved)
                attempts = 0
        return newest
