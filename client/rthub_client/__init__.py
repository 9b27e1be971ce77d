"""rthub consumer SDK: `Stream` for the live event stream, `verify` for webhooks."""

from rthub_client.backoff import Backoff
from rthub_client.errors import Forbidden, InvalidWebhook, ProtocolError, RthubError, Unauthorized
from rthub_client.stream import Event, Gap, Stream, StreamStats
from rthub_client.tokens import TokenSource, TokenUnavailable
from rthub_client.webhooks import verify, webhook_events

__all__ = [
    "Backoff",
    "Event",
    "Forbidden",
    "Gap",
    "InvalidWebhook",
    "ProtocolError",
    "RthubError",
    "Stream",
    "StreamStats",
    "TokenSource",
    "TokenUnavailable",
    "Unauthorized",
    "verify",
    "webhook_events",
]
