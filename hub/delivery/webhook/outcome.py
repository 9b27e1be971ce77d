"""What one delivery attempt did, as the worker settles it (shared by webhook and endpoint senders)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result.

    `delivered`: every item not in `rejected` is stored. Otherwise `settled` items are stored anyway
    (a batch split after a 400), and the rest waits: retried on the schedule, or held while `paused`
    (the endpoint refused the credentials). `rejected` items are dead-lettered now with their reason.
    `gone`: the endpoint answered 410, stop delivering to it. `abort`: the receiver asked to stop
    retrying this message (`webhook-delivery: abort-message`), dead-letter it now.
    """

    delivered: bool
    reason: str = ""
    gone: bool = False
    abort: bool = False
    retry_after: float | None = None
    paused: bool = False
    settled: tuple[str, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()
    already_stored: int = 0


def response_message(response: httpx.Response) -> str:
    """The receiver's own words about a refusal, short enough for a dead letter or a log row."""
    text = response.text.strip().replace("\n", " ")
    return text[:MESSAGE_CHARS] + ("…" if len(text) > MESSAGE_CHARS else "")
