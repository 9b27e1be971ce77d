"""The shared part of LRS and Caliper delivery: one POST per batch, a refused batch split in halves.

Status codes (docs/endpoints.md): 2xx stored; 409 stored already (a batch is split to find which);
400/413/422 split the batch until the refused item stands alone, then dead-letter it with the
endpoint's message; 401/403 pause the client; 410 disable it; anything else retry the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson

from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.outcome import Outcome, response_message
from hub.delivery.webhook.schedule import parse_retry_after

Post = Callable[[bytes, dict[str, str]], Awaitable[httpx.Response]]

SPLIT = frozenset({400, 413, 422})
PAUSE = frozenset({401, 403})
CONFLICT = 409
GONE = 410


def records(items: list[Item]) -> Iterator[dict[str, Any]]:
    """The translated records inside queued event frames (a frame's `data` is one record or a list)."""
    for item in items:
        data = orjson.loads(item.body)["data"]
        yield from data if isinstance(data, list) else (data,)


class BatchSender:
    """POSTs batches; subclasses say what the body and headers are."""

    headers: dict[str, str]

    def body(self, items: list[Item]) -> bytes:
        raise NotImplementedError

    async def send(self, items: list[Item], post: Post) -> Outcome:
        """Deliver `items` in order; transport errors propagate (the worker retries the whole batch)."""
        stored: list[str] = []
        rejected: list[tuple[str, str]] = []
        already = 0
        groups = [items]
        while groups:
            group = groups.pop(0)
            response = await post(self.body(group), self.headers)
            code = response.status_code
            if 200 <= code < 300 or (code == CONFLICT and len(group) == 1):
                stored += [item.id for item in group]
                already += len(group) if code == CONFLICT else 0
                continue
            if code in SPLIT or code == CONFLICT:
                if len(group) > 1:
                    half = len(group) // 2
                    groups[:0] = [group[:half], group[half:]]
                else:
                    rejected.append((group[0].id, f"HTTP {code}: {response_message(response)}"))
                continue
            reason = f"HTTP {code}: {response_message(response)}"
            return Outcome(
                False, reason, gone=code == GONE, paused=code in PAUSE,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                settled=tuple(stored), rejected=tuple(rejected), already_stored=already,
            )
        return Outcome(True, settled=tuple(stored), rejected=tuple(rejected), already_stored=already)
