"""Routes live events into the outboxes of entitled webhook clients, and runs their delivery workers.

`Fanout` calls `route(entry)` for every live entry. The router matches the entry against the
webhook clients' grants (one `GrantIndex`), renders it once per (translator, consumer type) with
the same `render` the WebSocket path uses, and appends the frame to each entitled client's outbox
in one pipeline. websocket+webhook clients are appended only while they have no live socket
(checked atomically inside the append script, see `presence`). The client set follows the
registry: loaded at start, reloaded per client on `{prefix}changes`, and fully every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.config import Settings
from hub.delivery.webhook.clients import WebhookClient, load_client, load_clients
from hub.delivery.webhook.handoff import Render
from hub.delivery.webhook.outbox import Appended, Outbox
from hub.delivery.webhook.worker import DeliveryOptions, DeliveryWorker
from hub.ingest import Entry
from rthub_lms.grants import GrantIndex, event_facts
from rthub_lms.keys import changes_channel

log = logging.getLogger("rthub.webhooks.router")

FULL_RELOAD_EVERY = 60.0
ROUTE_RETRY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0, 10.0)


class WebhookRouter:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        render: Render,
        *,
        options: DeliveryOptions | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._render = render
        self._options = options or DeliveryOptions()
        self._outbox = Outbox(redis, settings)
        self._index = GrantIndex()
        self.clients: dict[str, WebhookClient] = {}
        self.workers: dict[str, DeliveryWorker] = {}
        self.counts: Counter[str] = Counter()
        self._watcher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Load the webhook clients, start their workers, and follow registry changes."""
        self._apply_all(await load_clients(self._redis, self._settings))
        self._watcher = asyncio.create_task(self._watch(), name="rthub-webhooks-watch")

    async def route(self, entry: Entry) -> None:
        """Queue `entry` for every entitled webhook client.

        Rendering (the anonymiser reads Redis) and appending are retried together for ~30 s when
        Redis fails, then the error is raised; appends are idempotent, so a retry never doubles one.
        """
        if not self.clients:
            return
        matched = self._index.matching(event_facts(entry.event))
        if not matched:
            return
        for attempt, pause in enumerate((*ROUTE_RETRY, None)):
            try:
                await self._queue(entry, [self.clients[client_id] for client_id in matched])
                return
            except (RedisError, OSError) as exc:
                if pause is None:
                    raise
                log.warning("queueing %s for webhooks failed (attempt %d): %s", entry.cursor, attempt + 1, exc)
                await asyncio.sleep(pause)

    async def _queue(self, entry: Entry, clients: list[WebhookClient]) -> None:
        """Render once per (translator, consumer type), append for every client in one round trip."""
        groups: dict[tuple[str, str], list[WebhookClient]] = defaultdict(list)
        for client in clients:
            groups[(client.translator, client.consumer_type)].append(client)
        appends: list[tuple[str, str, bool]] = []
        for (translator, consumer_type), members in groups.items():
            frame = await self._render(entry, translator, consumer_type)
            if frame is not None:
                appends += [(client.client_id, frame.text, client.fallback) for client in members]
        if not appends:
            return
        results = await self._outbox.append(entry.cursor, appends)
        for (client_id, _, _), outcome in zip(appends, results, strict=True):
            self.counts[outcome.name.lower()] += 1
            worker = self.workers.get(client_id)
            if worker is not None and outcome != Appended.SOCKET_LIVE:
                worker.wake()

    async def close(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(worker.close() for worker in workers), *self._closing)

    def delivery_counts(self) -> Counter[str]:
        """Delivery counters summed over this instance's workers."""
        total: Counter[str] = Counter()
        for worker in self.workers.values():
            total.update(worker.counts)
        return total

    def _apply_all(self, found: dict[str, WebhookClient]) -> None:
        for client_id in set(self.clients) - set(found):
            self._apply(client_id, None)
        for client_id, client in found.items():
            self._apply(client_id, client)

    def _apply(self, client_id: str, client: WebhookClient | None) -> None:
        """Index, (re)start or stop one client's delivery."""
        if client is None:
            self.clients.pop(client_id, None)
            self._index.remove(client_id)
            worker = self.workers.pop(client_id, None)
            if worker is not None:
                closing = asyncio.create_task(worker.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            return
        self.clients[client_id] = client
        self._index.set(client_id, client.matcher)
        worker = self.workers.get(client_id)
        if worker is None:
            worker = DeliveryWorker(client, self._redis, self._settings, self._render, self._options, Counter())
            self.workers[client_id] = worker
            worker.start()
        else:
            worker.client = client
            worker.wake()

    async def _watch(self) -> None:
        """Follow `{prefix}changes`; reload everything after a reconnect and every minute.

        The loop also checks `_stopping`: redis-py can swallow a cancellation that lands inside
        `get_message(timeout=...)`, and the watcher must still end on `close`.
        """
        channel = changes_channel(self._settings)
        while not self._stopping:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                self._apply_all(await load_clients(self._redis, self._settings))
                loop = asyncio.get_running_loop()
                next_full = loop.time() + FULL_RELOAD_EVERY
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        client_id = data.decode() if isinstance(data, bytes) else str(data)
                        self._apply(client_id, await load_client(self._redis, self._settings, client_id))
                    if loop.time() >= next_full:
                        self._apply_all(await load_clients(self._redis, self._settings))
                        next_full = loop.time() + FULL_RELOAD_EVERY
            except (RedisError, OSError) as exc:
                log.warning("registry watch lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()
