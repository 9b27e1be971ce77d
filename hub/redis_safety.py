"""Whether rthub's Redis keeps what rthub writes: the one check behind the start-up warning, `/readyz`,
`rthub_redis_unsafe` and `--strict-redis` (and any command that wants the list, e.g. a doctor).

Three settings lose data silently: an eviction policy other than `noeviction` drops keys under memory
pressure (the client registry lives only in Redis), no persistence (neither AOF nor RDB snapshots)
loses everything on a restart, and a master with replicas but `min-replicas-to-write 0` acknowledges
writes a failover then loses. On a Redis Cluster every master is checked. A server that refuses
`CONFIG GET` (managed Redis, a renamed command) gives `unknown` for what it hides, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hub.config import Settings
from hub.redis import Client, text
from rthub_lms.keys import data_marker_key

log = logging.getLogger("rthub.redis")

EVICTION = "maxmemory-policy"
PERSISTENCE = "appendonly/save"
REPLICAS = "min-replicas-to-write"
SETTINGS = (EVICTION, PERSISTENCE, REPLICAS)
UNKNOWN = "unknown"

_WHY = {
    EVICTION: "Redis evicts keys under memory pressure: clients, grants, queued webhooks and events vanish",
    PERSISTENCE: "a Redis restart loses the stream, the client registry and queued webhooks",
    REPLICAS: "a failover loses writes the master acknowledged before its replicas had them",
}
_FIX = {
    EVICTION: "set `maxmemory-policy noeviction` (redis.conf, or CONFIG SET), or give rthub a Redis of its own",
    PERSISTENCE: "set `appendonly yes` (redis.conf, or CONFIG SET), or at least a `save` schedule",
    REPLICAS: "set `min-replicas-to-write 1` and `min-replicas-max-lag 10` on the master",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One unsafe (or unreadable) setting on one Redis server; `node` is empty for a single server."""

    setting: str
    found: str
    fix: str
    node: str = ""

    @property
    def unknown(self) -> bool:
        return self.found.startswith(UNKNOWN)

    def line(self) -> str:
        """The warning line: where, what, why it matters, what to do."""
        where = f"Redis {self.node}" if self.node else "Redis"
        if self.unknown:
            return f"{where}: {self.setting} is {self.found}; if it is unsafe, {_WHY[self.setting]}; fix: {self.fix}"
        return f"{where}: {self.setting} is {self.found}: {_WHY[self.setting]}; fix: {self.fix}"

    def public(self) -> dict[str, str]:
        return {"setting": self.setting, "found": self.found, "fix": self.fix, "node": self.node}


class RedisUnsafe(RuntimeError):
    """`--strict-redis` (`RTHUB_STRICT_REDIS`) and Redis can lose rthub's data, or could not be checked."""

    def __init__(self, problems: list[Problem] | None, reason: str = "") -> None:
        lines = [problem.line() for problem in problems or []] or [reason]
        super().__init__("refusing to start (--strict-redis / RTHUB_STRICT_REDIS): " + "; ".join(lines))
        self.problems = problems or []


async def redis_safety(client: Client) -> list[Problem]:
    """Every setting of `client`'s Redis (each master of a cluster) that can lose rthub's data.

    Redis errors other than a refused `CONFIG GET` (unreachable, timeout) propagate: the caller
    decides what an unchecked Redis means.
    """
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()
        problems: list[Problem] = []
        for node in sorted(client.get_primaries(), key=lambda node: node.name):
            problems += await _check(client, node.name, {"target_nodes": node})
        return problems
    return await _check(client, "", {})


class SafetyWatch:
    """The last check's problems, re-checked at most every `every` seconds (for `/readyz` and metrics)."""

    def __init__(self, client: Client, every: float = 30.0) -> None:
        self._client = client
        self._every = every
        self._checked = -float("inf")
        self._lock = asyncio.Lock()
        self.problems: list[Problem] | None = None  # None until a check succeeded

    async def check(self) -> list[Problem]:
        """Check now; Redis errors propagate and leave the last result in place."""
        problems = await redis_safety(self._client)
        self.problems, self._checked = problems, time.monotonic()
        return problems

    async def current(self) -> list[Problem]:
        """The problems, checked again when the last check is older than `every` seconds."""
        async with self._lock:
            if self.problems is None or time.monotonic() - self._checked >= self._every:
                return await self.check()
            return self.problems

    def counts(self) -> dict[str, int]:
        """Per setting, how many servers have it unsafe or unreadable (all 0 before the first check)."""
        counts = dict.fromkeys(SETTINGS, 0)
        for problem in self.problems or []:
            counts[problem.setting] += 1
        return counts


async def _check(client: Client, node: str, target: dict[str, Any]) -> list[Problem]:
    problems = []
    policy = await _config(client, EVICTION, target)
    if policy != "noeviction":
        problems.append(Problem(EVICTION, policy, _FIX[EVICTION], node))
    appendonly, save = await _config(client, "appendonly", target), await _config(client, "save", target)
    unread = [value for value in (appendonly, save) if value.startswith(UNKNOWN)]
    if unread:
        problems.append(Problem(PERSISTENCE, unread[0], _FIX[PERSISTENCE], node))
    elif appendonly == "no" and not save.strip():
        problems.append(Problem(PERSISTENCE, 'no/"" (no persistence)', _FIX[PERSISTENCE], node))
    try:
        replication = await client.info("replication", **target)
    except ResponseError as exc:
        return [*problems, Problem(REPLICAS, f"{UNKNOWN} (INFO refused: {exc})", _FIX[REPLICAS], node)]
    replicas = int(replication.get("connected_slaves", 0)) if replication.get("role") == "master" else 0
    if replicas:
        minimum = await _config(client, REPLICAS, target)
        if minimum.startswith(UNKNOWN) or minimum == "0":
            found = minimum if minimum.startswith(UNKNOWN) else f"0 with {replicas} replica(s) connected"
            problems.append(Problem(REPLICAS, found, _FIX[REPLICAS], node))
    return problems


async def _config(client: Client, name: str, target: dict[str, Any]) -> str:
    """One setting's value, or `unknown (...)` when the server refuses `CONFIG GET`."""
    try:
        reply = await client.config_get(name, **target)
    except ResponseError as exc:  # NOPERM, a renamed or disabled CONFIG
        return f"{UNKNOWN} (CONFIG GET refused: {exc})"
    values = {text(key): text(value) for key, value in reply.items()}
    if name not in values:
        return f"{UNKNOWN} (CONFIG GET {name} answered nothing)"
    return values[name]


class DataMarker:
    """Notices that Redis lost rthub's data: a restart without persistence, a flush, a failover to an
    empty replica. Settings can only say that this may happen; the marker says that it did. A random
    value is written once (`ensure`); after every reconnect (`check`, on the change follower's
    resubscribe) it must still be there. When it is gone the loss is logged as an error and counted
    (`rthub_redis_data_lost_total`), and a new marker is written for the next loss."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._key = data_marker_key(settings)
        self._value: str | None = None
        self.losses = 0

    async def ensure(self) -> None:
        """Write the marker unless there is one (another hub's, or this deployment's from before)."""
        await self._client.set(self._key, uuid.uuid4().hex, nx=True)
        self._value = text(await self._client.get(self._key))

    async def check(self) -> None:
        """Is the marker this hub saw still there? Redis errors propagate (the caller retries later)."""
        if self._value is None:
            await self.ensure()
            return
        found = await self._client.get(self._key)
        if found is not None and text(found) == self._value:
            return
        self.losses += 1
        log.error(
            "Redis lost rthub's data: the marker this hub saw is gone (a restart without persistence, a flush or "
            "a failover to an empty replica). The event stream, the client registry, queued webhooks and "
            "anonymised ids may be gone: restore the registry with `rthub admin import` from your last export, "
            "and make Redis persistent (see /readyz)"
        )
        await self.ensure()
