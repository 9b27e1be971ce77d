"""One backfill run: check the client, take its backfill lease, read, render, queue and deliver.

Reading (CPU: parse, filter, translate) and delivery (network) share one event loop: the reader
yields at every Redis call, so the delivery task's POSTs overlap the reading, and the reader waits
while the queue holds more than `QUEUE_CAP` events (a slow endpoint slows the read, never fills
Redis). `--rate` spaces the commits so no more than that many events per second are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from typing import IO

import redis.asyncio as aioredis

from auth.clients import Client
from auth.registry import ClientRegistry
from hub.anonymise import Anonymiser, RedisIdStore
from hub.backfill.deliver import Delivery
from hub.backfill.prepare import Candidate, Preparer, Tally, Window
from hub.backfill.progress import Progress
from hub.backfill.sources import SourceError, SourceFile, opened, resolve
from hub.backfill.store import Checkpoint, JobStore
from hub.config import Settings
from hub.delivery.webhook.clients import MAX_BATCH, WebhookClient, webhook_view
from hub.delivery.webhook.lease import Lease
from hub.delivery.webhook.sender import WebhookSender
from hub.delivery.webhook.worker import DeliveryOptions
from hub.translate import TranslationSettings
from rthub_lms import keys
from rthub_lms.grants import GrantError, Matcher, compile_grant, validate_grant

READ_BATCH = 2000
QUEUE_CAP = 20_000
LEASE_TTL_MS = 6000
DRY_RUN_ACTOR = "00000000-0000-4000-8000-000000000000"


class Refused(Exception):
    """The backfill cannot run as asked (client, sources, another run); the message says why."""


@dataclass(frozen=True, slots=True)
class Options:
    client_id: str
    sources: list[str]
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    rate: float | None = None
    batch_size: int | None = None
    restart: bool = False
    progress: bool = False


@dataclass(slots=True)
class Result:
    """What the run did, counted over the whole job (earlier interrupted runs included)."""

    files: int
    lines: int
    tally: Tally
    delivered: int = 0
    already_stored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    events_this_run: int = 0


async def run(options: Options, settings: Settings, redis: aioredis.Redis) -> Result:
    client = await ClientRegistry(redis, settings).get(options.client_id)
    matcher = _usable(client, options)
    assert client is not None
    window = Window(options.since, options.until)
    translation = TranslationSettings(settings.lms_root_url, settings.transformer_version)
    preparer = Preparer(matcher, client.translator, window, translation)
    if options.dry_run:
        return await _dry_run(options, preparer)
    view = webhook_view(client, settings)
    if view is None or view.paused:
        reason = "its endpoint is disabled" if view is None else f"its delivery is paused: {view.pause_reason}"
        raise Refused(f"client {client.client_id}: {reason}; fix that first, nothing would be delivered")
    batch = min(max(options.batch_size or view.batch_max, 1), MAX_BATCH)
    view = replace(view, batch_max=batch)
    lease = Lease(redis, keys.backfill_lease(settings, client.client_id), LEASE_TTL_MS)
    await _take(lease, client.client_id)
    try:
        return await _run_job(options, settings, redis, view, preparer, lease)
    finally:
        with contextlib.suppress(Exception):
            await lease.release()


def _usable(client: Client | None, options: Options) -> Matcher:
    """The client's compiled grant, or `Refused` saying why this client cannot be backfilled."""
    if client is None:
        raise Refused(f"no client {options.client_id!r} (rthub clients list shows them)")
    if not client.active:
        raise Refused(f"client {client.client_id} is revoked: nothing is sent to a revoked client")
    if client.delivery == "websocket":
        raise Refused(
            f"client {client.client_id} receives events over WebSocket only: a backfill has nowhere to deliver "
            "(history goes to a webhook, LRS or Caliper endpoint; give the client one with rthub clients update)"
        )
    try:
        return compile_grant(validate_grant(client.grant))
    except GrantError as exc:
        raise Refused(f"client {client.client_id}: its grant does not compile: {exc}") from exc


async def _take(lease: Lease, client_id: str) -> None:
    """The client's backfill lease; a run SIGKILLed a moment ago holds it until it expires (a few seconds)."""
    deadline = time.monotonic() + LEASE_TTL_MS / 1000 * 1.5
    while not await lease.acquire():
        if time.monotonic() > deadline:
            raise Refused(f"another rthub backfill for client {client_id} is running")
        await asyncio.sleep(0.25)


async def _keep(lease: Lease) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL_MS / 3000)
        if not await lease.renew():
            raise Refused("this run lost its lease (another run took over); stopping")


def _spec(options: Options) -> dict[str, object]:
    return {
        "sources": options.sources,
        "since": options.since.isoformat() if options.since else None,
        "until": options.until.isoformat() if options.until else None,
    }


async def _checkpoint(store: JobStore, options: Options) -> Checkpoint:
    """The unfinished job to resume, or a new one over the sources as they are now."""
    saved = await store.load()
    if saved is not None and options.restart:
        await store.finish()
        saved = None
    if saved is not None:
        if saved.spec != _spec(options):
            raise Refused(
                f"client {options.client_id} has an unfinished backfill of {saved.spec['sources']} "
                f"(since {saved.spec['since']}, until {saved.spec['until']}; {saved.file} of {len(saved.files)} "
                "files read): rerun it with the same arguments to finish it, or add --restart to drop it"
            )
        return saved
    checkpoint = Checkpoint(job=uuid.uuid4().hex[:12], spec=_spec(options), files=_resolve(options))
    await store.begin(checkpoint)
    return checkpoint


def _resolve(options: Options) -> list[SourceFile]:
    try:
        return resolve(options.sources)
    except SourceError as exc:
        raise Refused(str(exc)) from exc


async def _run_job(
    options: Options, settings: Settings, redis: aioredis.Redis, view: WebhookClient, preparer: Preparer,
    lease: Lease,
) -> Result:
    store = JobStore(redis, settings, view.client_id)
    checkpoint = await _checkpoint(store, options)
    preparer.tally = checkpoint.tally
    anonymiser = Anonymiser(RedisIdStore(redis, settings))
    progress = Progress(checkpoint.files, options.progress)
    sender = WebhookSender(DeliveryOptions().timeout, settings.private_access)
    delivery = Delivery(view, store, sender, view.batch_max, progress.note)
    started, first_seq = time.monotonic(), checkpoint.seq
    try:
        async with asyncio.TaskGroup() as group:
            keeper = group.create_task(_keep(lease))
            delivering = group.create_task(delivery.run())
            progress.start(checkpoint, delivery)
            await _read(checkpoint, store, preparer, anonymiser, view, delivery, progress, options.rate)
            delivery.finish()
            await delivering
            keeper.cancel()
    except* Exception as group:  # the first failure, unwrapped (the others are its consequences)
        raise group.exceptions[0] from None
    finally:
        progress.close()
        await sender.aclose()
    await store.finish()
    return Result(
        files=len(checkpoint.files), lines=checkpoint.lines, tally=checkpoint.tally,
        delivered=checkpoint.delivered + delivery.delivered,
        already_stored=checkpoint.already_stored + delivery.already_stored,
        rejected=checkpoint.rejected + delivery.rejected,
        seconds=time.monotonic() - started, events_this_run=checkpoint.seq - first_seq,
    )


async def _read(
    checkpoint: Checkpoint, store: JobStore, preparer: Preparer, anonymiser: Anonymiser, view: WebhookClient,
    delivery: Delivery, progress: Progress, rate: float | None,
) -> None:
    """Read from the checkpoint on, committing each batch of lines with its frames."""
    batch_lines = READ_BATCH if not rate else max(1, min(READ_BATCH, int(rate / 4)))
    started, queued_here = time.monotonic(), 0
    while checkpoint.file < len(checkpoint.files):
        source = checkpoint.files[checkpoint.file]
        for raw, lines, count in _batches(source, checkpoint.line, batch_lines):
            candidates = [found for line in lines if line.strip() and (found := preparer.sort(line))]
            actors = await anonymiser.actor_ids(view.consumer_type, {found.learner for found in candidates})
            frames = _render(preparer, candidates, actors, checkpoint)
            checkpoint.line += count
            checkpoint.lines += count
            await store.commit(checkpoint, frames)
            queued_here += len(frames)
            delivery.wake()
            progress.read(checkpoint, raw)
            if rate:
                ahead = queued_here / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            while await store.queued() > QUEUE_CAP:
                delivery.progressed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(delivery.progressed.wait(), 1.0)
        checkpoint.file += 1
        checkpoint.line = 0
        await store.commit(checkpoint, [])
    checkpoint.read_done = True
    await store.commit(checkpoint, [])


def _render(
    preparer: Preparer, candidates: list[Candidate], actors: dict[str, str], checkpoint: Checkpoint
) -> list[tuple[str, str]]:
    """(message id, frame) of each candidate that translates, numbered on from the checkpoint. A frame's
    cursor is `0-<n>`: never a stream position (those count milliseconds since 1970), so a receiver
    tells backfilled events from live ones; the message id names the job, so two jobs never share one."""
    frames = []
    for candidate in candidates:
        actor = actors.get(candidate.learner)
        if actor is None:
            preparer.unnamed(candidate)
            continue
        text = preparer.render(candidate, f"0-{checkpoint.seq + 1}", actor)
        if text is not None:
            checkpoint.seq += 1
            frames.append((f"backfill-{checkpoint.job}-{checkpoint.seq}", text))
    return frames


def _batches(source: SourceFile, skip: int, size: int) -> Iterator[tuple[IO[bytes], list[bytes], int]]:
    """(the raw file, the next lines, how many) after the first `skip` lines of `source`."""
    try:
        with opened(source) as (raw, stream):
            for _ in range(skip):
                if not stream.readline():
                    raise SourceError(f"{source.name}: has fewer lines than the checkpoint says ({skip}); "
                                      "it changed since the job started: --restart to start over")
            while True:
                lines = list(islice(stream, size))
                if not lines:
                    return
                yield raw, lines, len(lines)
    except SourceError as exc:
        raise Refused(str(exc)) from exc
    except (OSError, EOFError) as exc:  # a truncated gzip, a connection dropped mid-read
        raise Refused(f"{source.name}: cannot read: {exc}") from exc


async def _dry_run(options: Options, preparer: Preparer) -> Result:
    files = _resolve(options)
    started, lines = time.monotonic(), 0
    for source in files:
        for _, batch, count in _batches(source, 0, READ_BATCH):
            lines += count
            for line in batch:
                if line.strip() and (found := preparer.sort(line)):
                    preparer.render(found, "0-1", DRY_RUN_ACTOR)
    return Result(files=len(files), lines=lines, tally=preparer.tally, seconds=time.monotonic() - started)
