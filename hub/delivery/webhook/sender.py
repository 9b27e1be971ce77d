"""POST one batch to a client's endpoint and classify the outcome: the one step a payload format replaces.

The delivery worker owns ordering, leases, retries and dead letters; a sender only turns queued items
into one signed HTTP request and says what happened. `WebhookSender` posts the contract's event frames
with Standard Webhooks signatures; another format (an LRS endpoint, say) plugs in with the same
`send` / `aclose`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from hub.delivery.webhook.clients import WebhookClient
from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.schedule import parse_retry_after
from hub.delivery.webhook.signing import message_id
from hub.delivery.webhook.ssrf import Target, UnsafeURL, resolve

RESOLVE_TTL = 30.0
USER_AGENT = "rthub-webhooks/0.1"
ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: delivered, or why not (and what the receiver asked for).

    `gone`: the endpoint answered 410, stop delivering to it. `abort`: the receiver asked to stop
    retrying this message (`webhook-delivery: abort-message`), dead-letter it now.
    """

    delivered: bool
    reason: str = ""
    gone: bool = False
    abort: bool = False
    retry_after: float | None = None


class Sender(Protocol):
    async def send(self, client: WebhookClient, items: list[Item]) -> Outcome: ...

    async def aclose(self) -> None: ...


def batch_body(items: list[Item]) -> str:
    """The contract's batch body, built from the already-encoded event frames."""
    return '{"type":"batch","events":[' + ",".join(item.body for item in items) + "]}"


class WebhookSender:
    """Signed POSTs over one keep-alive connection pool per client, to an SSRF-checked, pinned address."""

    def __init__(self, timeout: float, allow_private: bool) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )
        self._target: tuple[str, Target, float] | None = None

    async def send(self, client: WebhookClient, items: list[Item]) -> Outcome:
        body = batch_body(items) if client.batch_max > 1 else items[0].body
        try:
            target = await self._resolve(client.url)
        except UnsafeURL as exc:
            return Outcome(False, f"refused URL: {exc}")
        headers = client.signer.headers(message_id([item.cursor for item in items]), body, time.time())
        headers.update({"content-type": "application/json", "user-agent": USER_AGENT, "host": target.host})
        extensions = {"sni_hostname": target.sni} if target.sni else None
        try:
            async with asyncio.timeout(self._timeout):  # httpx's timeout is per phase, this is the total
                response = await self._http.post(
                    target.url, content=body.encode(), headers=headers, extensions=extensions
                )
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, f"timeout after {self._timeout:g}s")
        except httpx.HTTPError as exc:
            self._target = None
            return Outcome(False, f"connection error: {exc.__class__.__name__}: {exc}")
        return classify(response)

    async def _resolve(self, url: str) -> Target:
        """The checked, pinned target of `url`, re-resolved every `RESOLVE_TTL` s and after connection errors."""
        now = time.monotonic()
        if self._target is None or self._target[0] != url or self._target[2] < now:
            self._target = (url, await resolve(url, self._allow_private), now + RESOLVE_TTL)
        return self._target[1]

    async def aclose(self) -> None:
        await self._http.aclose()


def classify(response: httpx.Response) -> Outcome:
    """2xx delivered; 410 gone; an abort-message answer ends this message's retries; else retry."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True)
    if status == 410:
        return Outcome(False, "410 Gone: endpoint disabled", gone=True)
    if response.headers.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE:
        return Outcome(False, f"HTTP {status}: receiver aborted the message", abort=True)
    return Outcome(False, f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after")))
