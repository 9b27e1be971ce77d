"""Webhook verification on top of the Standard Webhooks reference implementation."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from rthub_client.errors import InvalidWebhook


def verify(body: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The decoded body of a genuine, recent (5 min) rthub webhook; `InvalidWebhook` for anything else.

    Pass the raw body bytes exactly as received: re-serialised JSON does not match the signature.
    `secret` is the client's `whsec_...` webhook secret; a malformed one raises `ValueError`.
    """
    webhook = _webhook(secret)
    try:
        payload = webhook.verify(body, {name.lower(): value for name, value in headers.items()})
    except (WebhookVerificationError, ValueError, TypeError) as exc:
        raise InvalidWebhook(f"webhook refused: {exc or type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise InvalidWebhook("webhook body is not a JSON object")
    return payload


def _webhook(secret: str) -> Webhook:
    """The reference verifier for a `whsec_<base64>` secret, refusing a malformed one (the library would
    silently decode it to some other key, and then refuse every webhook as forged)."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret must be whsec_<base64>") from exc
    if not key:
        raise ValueError("webhook secret must be whsec_<base64>, not empty")
    return Webhook(key)


def webhook_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The event frames in a verified body: the body itself, or the `events` of a batch."""
    if payload.get("type") == "batch":
        return list(payload.get("events") or [])
    return [payload]
