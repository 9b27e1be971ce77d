"""The token endpoint's copies of client records: read through the registry, kept for at most a second.

A burst of token requests from one client (its sockets reconnecting after a restart, a fleet of
workers starting) would otherwise read the same record from Redis each time, which costs more than
the rest of the request. A kept record is dropped on the client's change notice (`forget`; the hub
wires it to its `ChangeFollower`), everything on a resubscribe (`clear`), and none is served once
`MAX_AGE` has passed since it was read, so a revocation or a scope change takes effect within the
contract's second even when a notice is lost. Only active records without a legacy hash are kept,
and the caller re-reads (`read`) before refusing a secret a kept record does not match, so a secret
rotated elsewhere works at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from auth.clients import Client
from auth.registry import ClientRegistry, has_legacy_hash

MAX_AGE = 1.0  # seconds: the contract's deadline for a revocation to take effect
SIZE = 10_000


class ClientCache:
    def __init__(self, registry: ClientRegistry, max_age: float = MAX_AGE, size: int = SIZE) -> None:
        self._registry = registry
        self._max_age = max_age
        self._size = size
        self._kept: OrderedDict[str, tuple[float, Client]] = OrderedDict()
        self._epoch = 0  # bumped by every forget/clear: a read that straddles one is not kept

    async def get(self, client_id: str) -> tuple[Client | None, bool]:
        """The record, and whether it is a kept copy (True) or was just read (False)."""
        found = self._kept.get(client_id)
        if found is not None and time.monotonic() - found[0] < self._max_age:
            self._kept.move_to_end(client_id)
            return found[1], True
        return await self.read(client_id), False

    async def read(self, client_id: str) -> Client | None:
        """The record as Redis has it now, kept for the next requests when it may be."""
        epoch, read_at = self._epoch, time.monotonic()
        client = await self._registry.get(client_id)
        if client is None or not client.active or has_legacy_hash(client):
            self._kept.pop(client_id, None)
        elif epoch == self._epoch:
            self._kept[client_id] = (read_at, client)
            self._kept.move_to_end(client_id)
            if len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return client

    async def forget(self, client_id: str) -> None:
        """A change notice: the client's record changed (an empty id: some records did)."""
        self._epoch += 1
        if client_id:
            self._kept.pop(client_id, None)
        else:
            self._kept.clear()

    async def clear(self) -> None:
        """Notices may have been lost (a resubscribe): nothing kept is trusted."""
        self._epoch += 1
        self._kept.clear()
