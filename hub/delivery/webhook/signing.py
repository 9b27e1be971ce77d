"""Standard Webhooks signatures, via the reference `standardwebhooks` package.

`webhook-id` is stable across retries (derived from the cursors delivered), `webhook-timestamp` is
the time of each attempt, `webhook-signature` is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed with the decoded `whsec_` secret.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Annotated, TypedDict

from standardwebhooks.webhooks import Webhook

# The names are not identifiers, hence the functional form.
WebhookHeaders = TypedDict(
    "WebhookHeaders",
    {
        "webhook-id": Annotated[
            str,
            {"pattern": "^msg_", "description": "msg_<cursor>, or msg_<first cursor>_<last cursor> for a batch; "
             "the same on every retry, so a receiver drops what it already has"},
        ],
        "webhook-timestamp": Annotated[str, {"pattern": "^[0-9]+$", "description": "unix seconds of this attempt"}],
        "webhook-signature": Annotated[
            str,
            {"pattern": "^v1,", "description": "v1,<base64 HMAC-SHA256 of '<webhook-id>.<webhook-timestamp>.<body>'>, "
             "keyed with the base64-decoded part of the client's whsec_ secret"},
        ],
    },
)
WebhookHeaders.__doc__ = "Standard Webhooks headers, on every attempt."


class SecretError(ValueError):
    """A webhook secret is not a `whsec_<base64>` string."""


def new_secret() -> str:
    """A fresh `whsec_` secret (24 random bytes), as `rthub clients create` should issue."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret.startswith("whsec_"):
            raise SecretError("webhook secret must start with whsec_")
        try:
            self._webhook = Webhook(secret)
        except Exception as exc:
            raise SecretError(f"webhook secret is not valid base64: {exc}") from exc

    def headers(self, msg_id: str, body: str, timestamp: float) -> WebhookHeaders:
        """The three Standard Webhooks headers for one attempt."""
        moment = datetime.fromtimestamp(int(timestamp), tz=UTC)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": self._webhook.sign(msg_id, moment, body),
        }


def message_id(cursors: list[str]) -> str:
    """`msg_<cursor>` for one event, `msg_<first>_<last>` for a batch: the same on every retry."""
    if len(cursors) == 1:
        return f"msg_{cursors[0]}"
    return f"msg_{cursors[0]}_{cursors[-1]}"
