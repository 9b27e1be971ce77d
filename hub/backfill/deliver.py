"""Delivering a backfill job's queue to its one client, with the hub's own senders.

Each batch goes through `WebhookSender` (the SSRF-checked, pinned transport) and the client's format
(`hub/delivery/webhook/formats/`: xAPI statements to an LRS, Caliper envelopes, or Standard Webhooks
signed frames with the client's secret), exactly as the hub's delivery worker sends live events, so a
receiver cannot tell a backfilled request from a live one except by its events' cursors. What the
worker does with the answer differs, because nobody watches a live queue here: the operator runs the
command. 2xx and "stored already" are acknowledged; a statement the endpoint refuses (400/422 alone)
is counted and reported, not dead-lettered; other failures are retried with backoff a few times, then
the run stops with the reason (`DeliveryStopped`), its queue and checkpoint kept for a rerun; 401/403
and 410 stop it at once. The client's record, its delivery health and its live queue are never touched.
A webhook receives its batches one at a time, in order; an LRS or Caliper endpoint, which stores by
statement id whatever the order, gets up to `ENDPOINT_LANES` batches at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hub.backfill.store import JobStore
from hub.delivery.webhook.clients import WebhookClient
from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.outcome import Outcome
from hub.delivery.webhook.sender import Sender

log = logging.getLogger("rthub.backfill")

ATTEMPTS = 8
ENDPOINT_LANES = 4  # batches in flight to an LRS or Caliper endpoint (a webhook gets one: its order matters)
FIRST_RETRY = 0.5
MOST_RETRY = 30.0


class DeliveryStopped(Exception):
    """The endpoint refused or kept failing; the message says why. Queue and checkpoint are kept."""


class Delivery:
    """Drains the job's queue in order while the reader fills it; `finish` ends it once reading is done."""

    def __init__(
        self, client: WebhookClient, store: JobStore, sender: Sender, batch: int,
        on_rejected: Callable[[str], None],
    ) -> None:
        self.client = client
        self._store = store
        self._sender = sender
        self._batch = batch
        self._on_rejected = on_rejected
        self.delivered = 0
        self.already_stored = 0
        self.rejected = 0
        self.progressed = asyncio.Event()  # set after each acknowledgement: a reader held by a full queue waits on it
        self._queued = asyncio.Event()
        self._reading = True

    def wake(self) -> None:
        """Something was queued."""
        self._queued.set()

    def finish(self) -> None:
        """Reading is over: deliver what is left, then return."""
        self._reading = False
        self._queued.set()

    async def run(self) -> None:
        """Take batches from the queue head into up to `lanes` deliveries at once; a lane that stops
        (`DeliveryStopped`) stops the run, the other lanes' batches left queued for the rerun."""
        lanes = ENDPOINT_LANES if self.client.sender is not None else 1
        flying: set[asyncio.Task[None]] = set()
        taken: str | None = None  # the newest item id handed to a lane
        try:
            while True:
                if len(flying) >= lanes:
                    done, flying = await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                    continue
                items = await self._store.head(self._batch, taken)
                if items:
                    taken = items[-1].id
                    flying.add(asyncio.create_task(self._deliver(items)))
                    continue
                if flying:  # what is in flight may be all there is: wait for it or for more to be queued
                    self._queued.clear()
                    waiter = asyncio.create_task(self._queued.wait())
                    done, _ = await asyncio.wait({*flying, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    for task in done & flying:
                        flying.discard(task)
                        task.result()
                    continue
                if not self._reading:
                    return
                self._queued.clear()
                await self._queued.wait()
        finally:  # stopped or cancelled: what the other lanes hold stays queued for the rerun
            for task in flying:
                task.cancel()
            await asyncio.gather(*flying, return_exceptions=True)

    async def _deliver(self, items: list[Item]) -> None:
        delay = FIRST_RETRY
        for attempt in range(1, ATTEMPTS + 1):
            outcome = await self._sender.send(self.client, items)
            items = await self._settle(items, outcome)
            if not items:
                return
            if outcome.paused or outcome.gone:
                raise DeliveryStopped(f"the endpoint refused the delivery: {outcome.reason}")
            if attempt == ATTEMPTS:
                break
            wait = max(delay, outcome.retry_after or 0.0)
            log.warning("backfill delivery failed (%s); attempt %d of %d in %.1fs", outcome.reason, attempt + 1,
                        ATTEMPTS, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, MOST_RETRY)
        raise DeliveryStopped(f"the endpoint kept failing ({ATTEMPTS} attempts): {outcome.reason}")

    async def _settle(self, items: list[Item], outcome: Outcome) -> list[Item]:
        """Acknowledge what the endpoint stored or refused for good; the rest is to be sent again."""
        rejected = dict(outcome.rejected)
        for reason in rejected.values():
            self._on_rejected(reason)
        stored = {item.id for item in items} - set(rejected) if outcome.delivered else set(outcome.settled)
        done = [item.id for item in items if item.id in stored or item.id in rejected]
        if done or outcome.already_stored:
            await self._store.settle(done, len(stored), outcome.already_stored, len(rejected))
            self.delivered += len(stored)
            self.already_stored += outcome.already_stored
            self.rejected += len(rejected)
            self.progressed.set()
        return [item for item in items if item.id not in stored and item.id not in rejected]
