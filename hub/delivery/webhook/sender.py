"""POST one batch to a client's endpoint and classify the outcome: the one step a payload format replaces.

The delivery worker owns ordering, leases, retries and dead letters; a sender only turns queued items
into HTTP requests and says what happened. `WebhookSender` owns the transport (an SSRF-checked,
pinned address, one keep-alive pool, a total timeout, every attempt reported for the delivery log)
and posts the contract's event frames with Standard Webhooks signatures, or hands the items to the
client's endpoint format (`hub/delivery/webhook/formats/`: xAPI statements to an LRS, Caliper envelopes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol

import httpx

from auth.addresses import PrivateAccess
from hub.delivery.webhook.clients import WebhookClient
from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.outcome import Outcome, response_message
from hub.delivery.webhook.schedule import parse_retry_after
from hub.delivery.webhook.signing import message_id
from hub.delivery.webhook.ssrf import Target, UnsafeURL, read_at_most, resolve

RESOLVE_TTL = 30.0
USER_AGENT = "rthub-webhooks/0.1"
ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"


class Sender(Protocol):
    async def send(self, client: WebhookClient, items: list[Item]) -> Outcome: ...

    async def aclose(self) -> None: ...


def batch_body(items: list[Item]) -> str:
    """The contract's batch body, built from the already-encoded event frames."""
    return '{"type":"batch","events":[' + ",".join(item.body for item in items) + "]}"


Attempted = Callable[[int | None, float, str], Awaitable[None]]


class WebhookSender:
    """POSTs over one keep-alive connection pool per client, to an SSRF-checked, pinned address."""

    def __init__(self, timeout: float, private: PrivateAccess, on_attempt: Attempted | None = None) -> None:
        self._timeout = timeout
        self._private = private
        self._on_attempt = on_attempt
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )
        self._target: tuple[str, Target, float] | None = None

    async def send(self, client: WebhookClient, items: list[Item]) -> Outcome:
        try:
            target = await self._resolve(client.url)
        except UnsafeURL as exc:
            return Outcome(False, f"refused URL: {exc}")
        post = partial(self._post, target)
        try:
            if client.sender is not None:
                return await client.sender.send(items, post)
            if client.signer is None:  # a paused client is not sent to; this only guards the type
                return Outcome(False, client.pause_reason or "no usable webhook secret")
            body = batch_body(items) if client.batch_max > 1 else items[0].body
            headers = client.signer.headers(message_id([item.cursor for item in items]), body, time.time())
            response = await post(body.encode(), {**headers, "content-type": "application/json"})
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, f"timeout after {self._timeout:g}s")
        except httpx.HTTPError as exc:
            self._target = None
            return Outcome(False, f"connection error: {exc.__class__.__name__}: {exc}")
        return classify(response)

    async def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """One POST to the pinned target, bounded in total, reported to `on_attempt`."""
        options = target.request_options({**headers, "user-agent": USER_AGENT})
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):  # httpx's timeout is per phase, this is the total
                async with self._http.stream("POST", target.url, content=body, **options) as streamed:
                    head = await read_at_most(streamed)
            response = httpx.Response(
                streamed.status_code, headers=streamed.headers, content=head, request=streamed.request
            )
        except (httpx.TimeoutException, TimeoutError):
            await self._report(started, None, f"timeout after {self._timeout:g}s")
            raise
        except httpx.HTTPError as exc:
            await self._report(started, None, f"connection error: {exc.__class__.__name__}")
            raise
        ok = 200 <= response.status_code < 300
        await self._report(started, response.status_code, "" if ok else response_message(response))
        return response

    async def _report(self, started: float, status: int | None, error: str) -> None:
        if self._on_attempt is not None:
            await self._on_attempt(status, time.monotonic() - started, error)

    async def _resolve(self, url: str) -> Target:
        """The checked, pinned target of `url`, re-resolved every `RESOLVE_TTL` s and after connection errors."""
        now = time.monotonic()
        if self._target is None or self._target[0] != url or self._target[2] < now:
            self._target = (url, await resolve(url, self._private), now + RESOLVE_TTL)
        return self._target[1]

    async def aclose(self) -> None:
        await self._http.aclose()


def classify(response: httpx.Response) -> Outcome:
    """2xx delivered; 410 gone; an abort-message answer ends this message's retries; else retry. A
    refusal's reason carries the receiver's own words, so a dead letter says why."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True)
    if status == 410:
        return Outcome(False, "410 Gone: endpoint disabled", gone=True)
    said = response_message(response)
    words = f": {said}" if said else ""
    if response.headers.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE:
        return Outcome(False, f"HTTP {status}: receiver aborted the message{words}", abort=True)
    return Outcome(False, f"HTTP {status}{words}", retry_after=parse_retry_after(response.headers.get("retry-after")))
