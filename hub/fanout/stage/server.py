"""The render stage: follow the live feed, render each event once, stream bundles to workers.

Its process (`hub.render_stage`) runs it beside `rthub serve`'s workers and keeps `interest` current
with the registry's change notices.

Which groups to render: the (translator, actor space) of every active client whose grant admits
the event (`Interest`, reloaded from the registry on every change notice and every minute). A
client's subscribe filter only narrows that, and the worker applies it. A group whose render fails
(Redis away for the anonymiser) is left out of the bundle: the worker renders it itself. A worker
that falls `MAX_BACKLOG` bytes behind is disconnected; it follows the live feed itself meanwhile.
Writes to the workers: a bundle after a quiet spell goes at the end of its event-loop tick; bundles
that follow within `RTHUB_STAGE_WRITE_DELAY` of a write (5 ms) wait for the next, so under load each
worker wakes at most once per delay and takes many bundles at a time (`BATCH` at the most), as
Centrifuge's write delay batches client writes. It trades up to that delay in latency for CPU: with
2 workers at 1,500 events/s, 57 µs/frame without it against 35 µs with it (docs/performance.md).
Bad entries are dead-lettered here, once, instead of by every worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from auth.clients import Client
from auth.registry import ClientRegistry
from hub.anonymise import Anonymiser, NoExternalId, RedisIdStore
from hub.config import Settings
from hub.fanout.render import Renderer
from hub.fanout.stage.bundle import Group, encode
from hub.ingest import BadEntry, Entry
from hub.ingest.deadletters import RedisDeadLetters
from hub.ingest.redis import RedisBroker
from hub.redis import Client as RedisClient
from hub.translate import TranslationSettings
from rthub_lms.grants import EventFacts, GrantError, GrantIndex, compile_grant, event_facts, validate_grant

log = logging.getLogger("rthub.stage")

MAX_BACKLOG = 8 * 2**20
# Bundles waiting for a write go out in one write per worker, so a worker wakes once for them and
# writes each socket once; a long burst is cut here.
BATCH = 32


class Interest:
    """Active clients' grants, by client id, and the group each renders for."""

    def __init__(self) -> None:
        self._index = GrantIndex()
        self._groups: dict[str, Group] = {}

    def load(self, clients: list[Client]) -> None:
        index, groups = GrantIndex(), {}
        for client in clients:
            if not client.active:
                continue
            try:
                index.set(client.client_id, compile_grant(validate_grant(client.grant)))
            except GrantError:
                continue
            groups[client.client_id] = (client.translator, client.actor_space)
        self._index, self._groups = index, groups

    def groups(self, facts: EventFacts) -> set[Group]:
        return {self._groups[client_id] for client_id in self._index.matching(facts)}


class RenderStage:
    def __init__(self, client: RedisClient, settings: Settings, sharded: bool) -> None:
        self._client = client
        self._settings = settings
        self.broker = RedisBroker(client, settings, sharded=sharded)
        self.counts: Counter[str] = Counter()
        self.renderer = Renderer(
            Anonymiser(RedisIdStore(client, settings)),
            TranslationSettings(settings.lms_root_url, settings.transformer_version),
            self.counts,
        )
        self.dead_letters = RedisDeadLetters(client, settings)
        self.interest = Interest()
        self.workers: set[asyncio.StreamWriter] = set()
        self._outgoing: list[bytes] = []  # bundles not yet written
        self._flush: asyncio.Handle | None = None  # when `_outgoing` goes out
        self._written = float("-inf")  # loop time of the last write

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A worker connected: it gets every bundle from now on until it goes or falls behind."""
        self.workers.add(writer)
        try:
            await reader.read()  # workers send nothing; EOF means the worker went away
        finally:
            self.workers.discard(writer)
            writer.close()

    async def run(self) -> None:
        async for entry in self.broker.live():
            if isinstance(entry, BadEntry):
                await self.dead_letters.put(entry)
            else:
                await self.publish(entry)

    async def publish(self, entry: Entry) -> None:
        """Render `entry` for every interested group and queue its bundle. Nothing is kept per cursor:
        the stage sees each entry once (the workers keep what they adopt for resume)."""
        facts = event_facts(entry.event)
        frames: dict[Group, str | None] = {}
        for translator, consumer_type in sorted(self.interest.groups(facts)):
            try:
                frames[(translator, consumer_type)] = await self.renderer.text(entry, translator, consumer_type, facts)
            except NoExternalId:  # left out: each worker meets it itself, dead-letters or counts it
                continue
            except Exception as exc:  # Redis away, or anything else: the worker renders (or dead-letters) it
                self.counts["render_deferred"] += 1
                log.warning("render deferred to the workers: %s", exc, extra={"cursor": entry.cursor})
        self._outgoing.append(encode(entry, facts, frames))
        self.counts["bundles"] += 1
        if len(self._outgoing) >= BATCH:
            self._send()
        elif self._flush is None:
            loop = asyncio.get_running_loop()
            due = self._written + self._settings.stage_write_delay - loop.time()
            self._flush = loop.call_later(due, self._send) if due > 0 else loop.call_soon(self._send)

    def _send(self) -> None:
        """Every bundle waiting (at most `BATCH`) to every worker, in one write each."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        self._written = asyncio.get_running_loop().time()
        self.counts["writes"] += 1
        for writer in list(self.workers):
            if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
                log.warning("a worker fell %d bytes behind; disconnecting it", MAX_BACKLOG)
                self.workers.discard(writer)
                writer.transport.abort()
                continue
            writer.write(data)

    async def reload_interest(self) -> None:
        """Read every client from the registry again (a change notice, a resubscribe, every minute)."""
        self.interest.load(await ClientRegistry(self._client, self._settings).list_all())
