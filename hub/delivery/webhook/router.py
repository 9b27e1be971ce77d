"""Routes the event stream into the outboxes of entitled webhook clients, and runs their delivery workers.

Routing is its own consumer of the event stream, off the WebSocket fan-out: `follow` pages through the
broker's history (`Broker.page`) from the saved position (`position`), matches each entry against the
webhook clients' grants (one `GrantIndex`), renders it once per (translator, consumer type) with the
shared render cache, and appends the frames of the whole page to the entitled clients' outboxes in one
round trip (`Outbox.append`: one script call per client, in cursor order); the position advances only
after the appends. A Redis error (outage, READONLY after a failover, OOM) is waited out on the same
page: nothing is skipped or dead-lettered for it. When the stream no longer holds the position
(retention exceeded), each webhook client gets one `gap` dead letter naming what was lost. The client
set follows the registry: loaded at start, reloaded per client on `{prefix}{registry}:changes`
(`ChangeFollower`), and fully after a resubscribe and every minute. A client whose record names a
`routed_from` older than where routing stands (created, or its delivery or grant changed, while the
router was reading further on) is first caught up alone, from that cursor to everyone's position, in
cursor order, and only then routed with everyone (the outbox refuses an id below its last one, so the
catch-up must come first). When routing stands behind the `routed_from` instead (its hub was down, or it
reads a backlog), the catch-up runs up to `routed_from` and everyone's routing skips the client until
it has passed it: the backlog was published before that registration and is not routed under it. A
client taken out of routing (its grant changed, or no longer compiles) has its place saved before the
shared position moves on. A client whose grant does not compile is held
there until it is fixed, then caught up under the fixed grant. One instance routes at a time: the
holder of the routing lease (`{prefix}wh:routing`, a `Lease` renewed every half ttl). The others,
workers of `rthub serve --workers N` or other hosts, wait and try to take it every third of a ttl, so a
SIGKILLed router is replaced within ~1.3 ttl and a stopped one (it releases the lease) within a third.
Correctness does not rest on the lease: appends are idempotent and the position only moves forward, so
two routers during a takeover only repeat work. The holder, while it has no webhook clients, reads no
entries: it only notes the stream's newest cursor every `idle_tip_every` seconds (`DeliveryOptions`), and starts routing
from the last one noted when its first client appears (caught up from its `routed_from`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.anonymise import NoExternalId
from hub.config import Settings
from hub.control.changes import ChangeFollower
from hub.delivery.webhook.clients import WebhookClient, load_client, load_clients
from hub.delivery.webhook.deadletters import record_unsent, write_gap
from hub.delivery.webhook.health import record_gap
from hub.delivery.webhook.lease import Lease
from hub.delivery.webhook.outbox import Outbox
from hub.delivery.webhook.position import ClientPosition, Position
from hub.delivery.webhook.worker import DeliveryOptions, DeliveryWorker
from hub.fanout.render import Frame
from hub.ingest import Broker, Entry, cursor_key
from hub.redis import Backoff, is_transient
from rthub_lms import keys
from rthub_lms.grants import EventFacts, GrantIndex, Matcher, event_facts

Render = Callable[[Entry, str, str], Awaitable[Frame | None]]

log = logging.getLogger("rthub.webhooks.router")

FULL_RELOAD_EVERY = 60.0
PAGE = 500
WAIT_FOR_ENTRIES = 1.0


class WebhookRouter:
    def __init__(
        self,
        broker: Broker,
        redis: aioredis.Redis,
        settings: Settings,
        render: Render,
        *,
        options: DeliveryOptions | None = None,
        facts: Callable[[Entry], EventFacts] | None = None,
        changes: ChangeFollower | None = None,
    ) -> None:
        """`changes`: the process's registry-change follower, started and closed by its owner; without
        one the router follows the registry with a follower of its own."""
        self._broker = broker
        self._redis = redis
        self._settings = settings
        self._render = render
        self._facts = facts or (lambda entry: event_facts(entry.event))
        self._options = options or DeliveryOptions()
        self._outbox = Outbox(redis, settings)
        self.position = Position(redis, broker, settings)
        self._client_positions = ClientPosition(redis, settings)
        self._index = GrantIndex()
        self.clients: dict[str, WebhookClient] = {}
        self._live: set[str] = set()  # routed with everyone (in the index)
        self._joining: set[str] = set()  # to be caught up first, or held (grant does not compile)
        self._held: set[str] = set()  # held clients whose place this router has saved
        self._left_at: dict[str, str] = {}  # taken out of routing: the last cursor routed to them
        self._routed_after: dict[str, tuple[int, int]] = {}  # joined ahead of everyone: routed only past this
        self._previous: dict[str, Matcher] = {}  # the grant a changed client was routed under until routed_from
        self._routed_upto: str | None = None
        self.workers: dict[str, DeliveryWorker] = {}
        self.counts: Counter[str] = Counter()
        self._own_changes = changes is None
        self._changes = changes or ChangeFollower(redis, settings)
        self._follower: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._changed = asyncio.Event()
        self._lease = Lease(redis, keys.routing_lease(settings), self._options.lease_ttl_ms)
        self._leading = False
        self._renew_at = 0.0

    async def start(self) -> None:
        """Load the webhook clients, start their workers, and follow registry changes.

        On a deployment's very first start the routing position is the stream's newest entry; it is
        saved here, before the hub serves, so an event published once the hub is up is routed even
        when the routing task (or the instance holding the routing lease) starts reading later."""
        await self.position.load()
        self._apply_all(await load_clients(self._redis, self._settings))
        self._changes.register(self._reload, self._reload_all, resync_every=FULL_RELOAD_EVERY)
        if self._own_changes:
            self._changes.start()

    def follow(self) -> None:
        """Route the event stream from the saved position, in its own task, until `close`."""
        self._follower = asyncio.create_task(self._follow(), name="rthub-webhooks-route")

    async def _follow(self) -> None:
        cursor: str | None = None
        backoff = Backoff()
        while not self._stopping:
            try:
                if not await self._lead():
                    cursor = self._routed_upto = None
                    await asyncio.sleep(self._options.lease_ttl_ms / 3000)
                    continue
                if cursor is None:
                    cursor = self._routed_upto = await self.position.load()
                if self._joining:
                    await self._join(cursor)
                if not self._live and self._joining <= self._held:  # nothing to route: note where the stream stands
                    await self._save_left()
                    cursor = self._routed_upto = await self.position.advance_to_tip()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), self._options.idle_tip_every)
                    self._changed.clear()
                    continue
                page, cursor = await self._read(cursor)
                if not page:
                    await self._broker.wait_after(cursor, WAIT_FOR_ENTRIES)
                    continue
                await self.route_page(page)
                cursor = self._routed_upto = page[-1].cursor
                await self._advance(cursor)
                self.counts["routed"] += len(page)
                backoff.reset()
            except (RedisError, OSError) as exc:  # even a lasting error: skipping the page would lose it
                delay = backoff.next_delay()
                self.counts["route_retries"] += 1
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "routing waits for Redis (%s); retrying in %.2fs", exc, delay, extra={"cursor": cursor})
                await asyncio.sleep(delay)

    async def _advance(self, cursor: str) -> None:
        """Move everyone's position to `cursor`, after saving the place of clients taken out of routing."""
        await self._save_left()
        await self.position.advance(cursor)
        position = cursor_key(cursor)
        for client_id in [c for c, after in self._routed_after.items() if after <= position]:
            del self._routed_after[client_id]

    async def _save_left(self) -> None:
        """Clients taken out of routing (grant or delivery changed, grant no longer compiles) still need
        what comes after the last cursor routed to them: saved before the shared position moves past it."""
        for client_id, cursor in list(self._left_at.items()):
            await self._client_positions.keep_older(client_id, cursor)
            if self._left_at.get(client_id) == cursor:
                del self._left_at[client_id]

    async def _join(self, cursor: str) -> None:
        """Route each waiting client alone up to `cursor` (everyone's position), from the oldest of its
        record's unaccounted `routed_from`, its saved place and where it left routing; then route it with
        everyone. A client whose grant does not compile has its place saved and waits there."""
        for client_id in list(self._joining):
            view = self.clients.get(client_id)
            if view is None or client_id in self._held:
                continue
            joined, saved = await self._client_positions.read(client_id)
            points = [point for point in (saved, self._left_at.get(client_id)) if point]
            if view.routed_from and view.routed_from != joined:
                points.append(view.routed_from)
            begin = min(points, key=cursor_key) if points else None
            if view.matcher is None:
                await self._client_positions.start(client_id, begin or cursor, view.routed_from)
                self._left_at.pop(client_id, None)
                self._held.add(client_id)
                log.warning("client %s is held at %s: %s", client_id, begin or cursor, view.pause_reason)
                continue
            # Routing behind the record's `routed_from` (its hub was down, or it reads a backlog): what lies
            # between everyone's position and `routed_from` was published before this registration, so it
            # is the catch-up's to route (from where the client left), never everyone's under it.
            # Only where what came before is known: a client never routed (new), or one whose previous
            # grant this router held; otherwise (another router routed it before) the old behaviour.
            known = not joined or client_id in self._previous
            ahead = known and bool(view.routed_from) and cursor_key(view.routed_from) > cursor_key(cursor)
            upto = view.routed_from if ahead else cursor
            if begin is not None and cursor_key(begin) < cursor_key(upto):
                await self._client_positions.start(client_id, begin, view.routed_from)
                self._left_at.pop(client_id, None)
                if not await self._catch_up(view, begin, upto, self._previous.get(client_id)):
                    return  # routing lease lost: the holder continues from the saved progress
            if self.clients.get(client_id) is view:
                await self._client_positions.caught_up(client_id, view.routed_from)
                self._left_at.pop(client_id, None)
            if self.clients.get(client_id) is view:
                self._joining.discard(client_id)
                self._index.set(client_id, view.matcher)
                self._live.add(client_id)
                self._previous.pop(client_id, None)
                if upto != cursor:
                    self._routed_after[client_id] = cursor_key(upto)
            elif client_id in self.clients:  # changed meanwhile: the next round continues from here
                await self._client_positions.keep_older(client_id, upto)

    async def _catch_up(self, client: WebhookClient, after: str, upto: str, previous: Matcher | None = None) -> bool:
        """Route the entries in (after, upto] to `client` alone, in cursor order, saving its progress per
        page (a router that stops resumes there); entries retention dropped give it one `gap` dead letter.
        Entries up to the record's `routed_from` were published before its change: they go by `previous`,
        the grant routed until then, when this router knows it. False when this instance lost the routing
        lease on the way."""
        assert client.matcher is not None
        changed_at = cursor_key(client.routed_from) if previous is not None and client.routed_from else (-1, -1)
        log.info("catching up client %s from %s to %s", client.client_id, after, upto)
        while cursor_key(after) < cursor_key(upto):
            if not await self._lead():
                return False
            page = await self._broker.page(after, PAGE)
            if page.lost is not None:
                lost = min(page.lost, upto, key=cursor_key)
                log.error("client %s lost the events after %s up to %s (stream retention)", client.client_id,
                          after, lost)
                await self._gap_letter(client, after, lost)
                after = lost
                await self._client_positions.progress(client.client_id, after)
            if not page.entries:
                return True
            queue = _Queue()
            for entry in page.entries:
                if entry.cursor is None:
                    continue
                if cursor_key(entry.cursor) > cursor_key(upto):
                    await self._send(queue)
                    return True
                matcher = previous if cursor_key(entry.cursor) <= changed_at else client.matcher
                if isinstance(entry, Entry) and matcher is not None and matcher.matches(self._facts(entry)):
                    await self._render_for(entry, [client], queue)
                    self.counts["caught_up"] += 1
                after = entry.cursor
            await self._send(queue)
            await self._client_positions.progress(client.client_id, after)
        return True

    async def _lead(self) -> bool:
        """Whether this instance routes now: takes the routing lease when free, renews it when held
        (every half ttl), and says so in the log when that changes."""
        now = time.monotonic()
        if self._leading and now < self._renew_at:
            return True
        held = await (self._lease.renew() if self._leading else self._lease.acquire())
        if held != self._leading:
            self._leading = held
            if held:
                self.counts["routing_taken"] += 1
            log.info("this instance %s webhook routing", "takes over" if held else "lost")
        self._renew_at = now + self._options.lease_ttl_ms / 2000
        return held

    async def _read(self, cursor: str) -> tuple[list[Entry], str]:
        """The next page after `cursor` (events only: the fan-out dead-letters bad entries), and the
        cursor to read after: past a gap when the stream's retention has dropped entries after `cursor`."""
        page = await self._broker.page(cursor, PAGE)
        if page.lost is not None:
            await self._gap(cursor, page.lost)
            cursor = page.lost
        entries = []
        for entry in page.entries:
            if isinstance(entry, Entry):
                entries.append(entry)
            else:
                cursor = entry.cursor or cursor
        if not entries and page.entries:
            await self._advance(cursor)
        return entries, cursor

    async def _gap(self, after: str, upto: str) -> None:
        """Entries in (after, upto] left the stream before they were routed: one dead letter per
        webhook client, written by exactly one instance."""
        await self._save_left()
        if not await self.position.claim_gap(after, upto):
            return
        log.error("webhook routing lost the events after %s up to %s (stream retention)", after, upto)
        for client_id in list(self._live):
            await self._gap_letter(self.clients[client_id], after, upto)

    async def _gap_letter(self, client: WebhookClient, after: str, upto: str) -> None:
        await write_gap(self._redis, self._settings, client.client_id, client.url, after, upto)
        await record_gap(self._redis, self._settings, client.client_id)
        self.counts["gaps"] += 1

    async def _no_external_id(self, client: WebhookClient, entry: Entry, exc: NoExternalId) -> None:
        """A dead letter naming the event and why it was not sent; listed, not replayable (no body was
        rendered): fill the mirror, then send the time range again with `rthub backfill`."""
        body = {"cursor": entry.cursor, "event_type": entry.event.get("name"), "not_sent": "no external id"}
        await record_unsent(self._redis, self._settings, client.client_id, entry.cursor, body,
                            f"no_external_id: {exc}", client.url)
        self.counts["no_external_id"] += 1
        log.warning("client %s: event %s dead-lettered: %s", client.client_id, entry.cursor, exc)

    async def route(self, entry: Entry) -> None:
        """Queue `entry` for every entitled webhook client (`route_page` of one entry)."""
        await self.route_page([entry])

    async def route_page(self, entries: list[Entry]) -> None:
        """Queue each of `entries` (in cursor order) for every entitled webhook client: match and render
        them all, then append them in one round trip (`Outbox.append`, each client's in cursor order).
        One attempt: Redis errors are raised, and appends are idempotent, so the caller may simply route
        the page again. A client taken out of routing while the page was rendered gets nothing of it:
        its place (`_left_at`) is where routing stood before the page."""
        if not self._live:
            return
        queue = _Queue()
        for entry in entries:
            matched = self._index.matching(self._facts(entry))
            if matched and self._routed_after:
                position = cursor_key(entry.cursor)
                matched = [c for c in matched if position > self._routed_after.get(c, (-1, -1))]
            if matched:
                await self._render_for(entry, [self.clients[client_id] for client_id in matched], queue)
        queue.rows = [row for row in queue.rows if row[1] in self._live]
        queue.unsent = [unsent for unsent in queue.unsent if unsent[0].client_id in self._live]
        await self._send(queue)

    async def _render_for(self, entry: Entry, clients: list[WebhookClient], queue: _Queue) -> None:
        """Render once per (translator, actor space) and queue the frame for each of `clients`. A learner
        with no mirrored external id is dead-lettered for the `lms-external-id` clients (reason
        `no_external_id`), never sent under another id."""
        groups: dict[tuple[str, str], list[WebhookClient]] = defaultdict(list)
        for client in clients:
            groups[(client.translator, client.consumer_type)].append(client)
        for (translator, consumer_type), members in groups.items():
            try:
                frame = await self._render(entry, translator, consumer_type)
            except NoExternalId as exc:
                queue.unsent += [(client, entry, exc) for client in members]
                continue
            if frame is not None:
                queue.rows += [(entry.cursor, client.client_id, frame.text) for client in members]

    async def _send(self, queue: _Queue) -> None:
        """Append what `queue` holds in one round trip, then write its `no_external_id` dead letters, and
        wake the workers of the clients that got something new."""
        new = await self._outbox.append(queue.rows)
        for client, entry, exc in queue.unsent:
            await self._no_external_id(client, entry, exc)
        total = Counter(client_id for _, client_id, _ in queue.rows)
        for client_id, queued in new.items():
            self.counts["queued"] += queued
            self.counts["already_queued"] += total[client_id] - queued
            worker = self.workers.get(client_id)
            if worker is not None and queued:
                worker.wake()

    async def close(self) -> None:
        """Stop routing and delivery; hand the routing lease back so another instance takes over at once."""
        self._stopping = True
        if self._own_changes:
            await self._changes.close()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._leading:
            self._leading = False
            with contextlib.suppress(RedisError, OSError):
                await self._lease.release()
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

    def paused(self) -> Counter[str]:
        """Webhook clients paused now, by cause (endpoint, credential, secret, grant)."""
        return Counter(client.paused_for for client in self.clients.values() if client.paused)

    def _apply(self, client_id: str, client: WebhookClient | None) -> None:
        """Index, (re)start or stop one client's delivery. A client joins the routing of everyone at once
        only when nothing of it is pending (no `routed_from` to account for, or the same one it is
        routed with now); else it waits for the routing task to catch it up (`_join`)."""
        if client is None:
            self._routed_after.pop(client_id, None)
            self._previous.pop(client_id, None)
            self.clients.pop(client_id, None)
            self._index.remove(client_id)
            for pending in (self._live, self._joining, self._held):
                pending.discard(client_id)
            self._left_at.pop(client_id, None)
            worker = self.workers.pop(client_id, None)
            if worker is not None:
                closing = asyncio.create_task(worker.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            return
        before = self.clients.get(client_id)
        self.clients[client_id] = client
        _log_pause(before, client)
        live = client_id in self._live
        unchanged = not client.routed_from or (live and before is not None and before.routed_from == client.routed_from)
        if client.matcher is not None and unchanged and client_id not in self._joining:
            self._index.set(client_id, client.matcher)
            self._live.add(client_id)
        else:
            if live:
                if before is not None and before.matcher is not None:
                    self._previous.setdefault(client_id, before.matcher)
                self._index.remove(client_id)
                self._live.discard(client_id)
                if self._routed_upto is not None:
                    self._left_at[client_id] = self._routed_upto
            self._joining.add(client_id)
            self._held.discard(client_id)
            self._routed_after.pop(client_id, None)  # `_join` decides again
        self._changed.set()
        worker = self.workers.get(client_id)
        if worker is None:
            worker = DeliveryWorker(client, self._redis, self._settings, self._options, Counter())
            self.workers[client_id] = worker
            worker.start()
        else:
            worker.client = client
            worker.wake()
            worker.recheck()

    async def _reload(self, client_id: str) -> None:
        """A change notice: reload one client's delivery."""
        if not self._stopping:
            self._apply(client_id, await load_client(self._redis, self._settings, client_id))

    async def _reload_all(self) -> None:
        """After a resubscribe (notices may have been lost) and every `FULL_RELOAD_EVERY`: reload every client."""
        if not self._stopping:
            self._apply_all(await load_clients(self._redis, self._settings))



class _Queue:
    """What routing a page (or a catch-up page) queues: (cursor, client id, body) rows in cursor order,
    and the (client, entry, reason) of events that could not be rendered for a client."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.unsent: list[tuple[WebhookClient, Entry, NoExternalId]] = []


def _log_pause(before: WebhookClient | None, after: WebhookClient) -> None:
    """Say when a client's configuration becomes unusable here, or usable again."""
    was = before.pause_reason if before is not None and before.paused_for not in ("", "endpoint") else ""
    now = after.pause_reason if after.paused_for not in ("", "endpoint") else ""
    if now and now != was:
        log.warning("client %s is paused, its events kept until it is fixed: %s", after.client_id, now)
    elif was and not now:
        log.info("client %s resumes: its webhook configuration is usable again", after.client_id)
