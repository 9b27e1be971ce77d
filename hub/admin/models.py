"""The admin API's request and response bodies: the handlers build and read these, and the OpenAPI
document is generated from them (`hub.admin.openapi`), so the two cannot part.

The client shapes themselves (`ClientFields`, `NewClient`, `PublicClient`, `EndpointCredential`)
live in `auth.clients`, beside the validation every front end shares.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from auth.clients import PublicClient
from hub.delivery.webhook.deadletters import DeadLetter
from hub.delivery.webhook.health import LOG_SIZE, DeliveryAttempt, DeliveryHealth
from hub.delivery.webhook.outbox import QueueDepth
from hub.delivery.webhook.retry import RetryState

MAX_DEADLETTERS = 1000
DEFAULT_DEADLETTERS = 100
Moment = Annotated[float | str, {"description": "unix seconds, or an ISO 8601 time (UTC if no zone)"}]


class ErrorBody(TypedDict):
    """What went wrong, for a program (`error`) and for a person (`message`)."""

    error: str
    message: str


class FieldError(TypedDict):
    """Invalid input: `field` names the offending field (for a grant, the rule and value: `grant[1].courses[0]`)."""

    error: Literal["validation_error"]
    field: str
    message: str


class ClientView(PublicClient):
    """A client with its live sockets and its webhook / endpoint delivery health."""

    live_connections: int
    delivery_health: Annotated[DeliveryHealth | None, {"description": "null: never had a webhook delivery"}]


class ClientDetail(ClientView):
    """One client with what waits for it: its queue, the batch being retried, its dead letters."""

    queue: Annotated[QueueDepth | None, {"description": "null: a WebSocket-only client, nothing is queued"}]
    retry: Annotated[RetryState | None, {"description": "null: no batch waits for another attempt"}]
    deadletters: Annotated[int, {"description": "dead letters stored now (`GET /deadletters?client_id=` lists "
                                                "them); replayed ones are gone from here"}]


Warnings = Annotated[
    list[str],
    {"description": "what the grant probably misses: event_types patterns that match no known event, or only "
                    "some names of one (see `rthub events`); the client is saved either way"},
]


class ClientWithSecret(PublicClient):
    """A client with its new secret: shown in this response only."""

    client_secret: str


class CreatedClient(ClientWithSecret):
    """A new client with its secret, and what its grant probably misses."""

    warnings: Warnings


class UpdatedClient(PublicClient):
    """The client as changed, with what its grant probably misses."""

    warnings: Warnings


class ClientList(TypedDict):
    clients: list[ClientView]


class DeliveryLog(TypedDict):
    """The client's last delivery attempts, newest first."""

    deliveries: list[DeliveryAttempt]


class DeliveriesQuery(TypedDict):
    limit: NotRequired[Annotated[int, {"minimum": 1, "maximum": LOG_SIZE, "default": LOG_SIZE}]]


class Connections(TypedDict):
    """Open WebSockets per client id, over all hub instances (clients with none are left out)."""

    connections: dict[str, int]


class DeadLettersQuery(TypedDict):
    client_id: NotRequired[str]
    limit: NotRequired[Annotated[int, {"minimum": 1, "maximum": MAX_DEADLETTERS, "default": DEFAULT_DEADLETTERS}]]
    since: NotRequired[Annotated[Moment, {"description": "failed at or after this time"}]]
    until: NotRequired[Annotated[Moment, {"description": "failed at or before this time"}]]


class DeadLetters(TypedDict):
    """Dead letters, oldest first."""

    deadletters: list[DeadLetter]


class ReplayRequest(TypedDict, total=False):
    """Which dead letters to queue again: the given ids, else a client's, else all; optionally only those
    that failed between `since` and `until`."""

    ids: list[str]
    client_id: str
    since: Moment
    until: Moment
    enable: Annotated[bool, {"description": "also enable delivery again for the clients whose endpoint is "
                                           "disabled, so what is replayed is delivered now (default false: "
                                           "it waits until delivery is enabled)"}]


class Replayed(TypedDict):
    replayed: Annotated[int, {"description": "how many dead letters were queued again"}]
    waiting: Annotated[int, {"description": "of those, how many wait: their client's delivery is disabled or "
                                            "paused, or the client is revoked"}]
    enabled: Annotated[list[str], {"description": "clients whose delivery this request enabled again"}]


class RetryNow(TypedDict):
    retrying: Annotated[bool, {"description": "false: no batch was waiting for a later attempt"}]


Document = dict[str, Any]
