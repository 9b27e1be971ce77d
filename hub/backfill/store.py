"""A backfill job's state in Redis: its checkpoint and its queue, moved forward together.

The checkpoint (`keys.backfill_checkpoint`, a hash) says which files the job reads, how far it has
read (file index, lines of that file consumed), how many events it has queued (the last sequence
number) and delivered, and its counts. The queue (`keys.backfill_queue`, a stream; fields `c`: the
message id, `b`: the rendered frame) holds what is rendered and not yet delivered. Each batch of
lines is committed in one MULTI/EXEC: its frames appended and the checkpoint moved past its lines,
or neither. Each delivery is acknowledged the same way: the items deleted and the delivered count
raised together. So a process killed anywhere resumes exactly: lines after the checkpoint are read
again, queued frames are delivered again only if their acknowledgement was lost (the same bytes, so
the same statement ids and webhook ids: the receiver keeps one copy). All keys are in the client's
hash slot, so the transactions hold on a Redis Cluster too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis

from hub.backfill.prepare import Tally
from hub.backfill.sources import SourceFile
from hub.config import Settings
from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.outbox import field as stream_field
from hub.redis import text
from rthub_lms import keys


@dataclass(slots=True)
class Checkpoint:
    """Where one client's job stands. `spec` is what the job was started with (sources, window), so a
    rerun with other arguments is told, not silently mixed in."""

    job: str
    spec: dict[str, object]
    files: list[SourceFile]
    file: int = 0
    line: int = 0
    seq: int = 0
    lines: int = 0
    read_done: bool = False
    delivered: int = 0
    already_stored: int = 0
    rejected: int = 0
    tally: Tally = field(default_factory=Tally)

    def position(self) -> dict[str, str]:
        """The fields a queued batch moves (the delivery counters are raised separately)."""
        return {
            "file": str(self.file), "line": str(self.line), "seq": str(self.seq), "lines": str(self.lines),
            "read_done": "1" if self.read_done else "0", "tally": orjson.dumps(self.tally.as_rows()).decode(),
        }


class JobStore:
    """The checkpoint and queue of one client's backfill job."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, client_id: str) -> None:
        self._redis = redis
        self.checkpoint_key = keys.backfill_checkpoint(settings, client_id)
        self.queue_key = keys.backfill_queue(settings, client_id)

    async def load(self) -> Checkpoint | None:
        saved = {text(name): text(value) for name, value in (await self._redis.hgetall(self.checkpoint_key)).items()}
        if not saved.get("job"):
            return None
        return Checkpoint(
            job=saved["job"],
            spec=orjson.loads(saved["spec"]),
            files=[SourceFile(name, size) for name, size in orjson.loads(saved["files"])],
            file=int(saved.get("file", 0)),
            line=int(saved.get("line", 0)),
            seq=int(saved.get("seq", 0)),
            lines=int(saved.get("lines", 0)),
            read_done=saved.get("read_done") == "1",
            delivered=int(saved.get("delivered", 0)),
            already_stored=int(saved.get("already_stored", 0)),
            rejected=int(saved.get("rejected", 0)),
            tally=Tally.from_rows(orjson.loads(saved.get("tally", "[]"))),
        )

    async def begin(self, checkpoint: Checkpoint) -> None:
        """Start a new job (any earlier queue dropped with its checkpoint)."""
        files = [[source.name, source.size] for source in checkpoint.files]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.checkpoint_key, self.queue_key)
            pipe.hset(self.checkpoint_key, mapping={
                "job": checkpoint.job, "spec": orjson.dumps(checkpoint.spec).decode(),
                "files": orjson.dumps(files).decode(), **checkpoint.position(),
            })
            await pipe.execute()

    async def commit(self, checkpoint: Checkpoint, frames: list[tuple[str, str]]) -> None:
        """Append (message id, frame) pairs and move the checkpoint, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for message, body in frames:
                pipe.xadd(self.queue_key, {"c": message, "b": body})
            pipe.hset(self.checkpoint_key, mapping=checkpoint.position())
            await pipe.execute()

    async def head(self, limit: int, after: str | None = None) -> list[Item]:
        """The next `limit` queued items, from the start or strictly after the item id `after`."""
        rows = await self._redis.xrange(self.queue_key, min="-" if after is None else f"({after}", count=limit)
        items = []
        for row_id, fields in rows:
            entry_id = text(row_id)
            items.append(Item(self.queue_key, entry_id, stream_field(fields, "c") or entry_id,
                              stream_field(fields, "b") or ""))
        return items

    async def settle(self, ids: list[str], delivered: int, already_stored: int, rejected: int) -> None:
        """Remove finished items and count them, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if ids:
                pipe.xdel(self.queue_key, *ids)
            pipe.hincrby(self.checkpoint_key, "delivered", delivered)
            pipe.hincrby(self.checkpoint_key, "already_stored", already_stored)
            pipe.hincrby(self.checkpoint_key, "rejected", rejected)
            await pipe.execute()

    async def queued(self) -> int:
        return int(await self._redis.xlen(self.queue_key))

    async def finish(self) -> None:
        """The job is done (or dropped): forget its checkpoint and queue."""
        await self._redis.delete(self.checkpoint_key, self.queue_key)
