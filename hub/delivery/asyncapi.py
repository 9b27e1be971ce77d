"""The AsyncAPI 3.0 document of what consumers build against, served at `GET /v1/asyncapi.json`.

`WS /v1/events` (its auth, resume parameters, frames and close codes), and the deliveries the hub
makes: webhooks (Standard Webhooks headers, event or batch bodies, what the receiver's answers do),
xAPI statements to an LRS, Caliper envelopes to a Caliper endpoint. Nothing here is written twice:
payloads come from the frame and body types the code builds (`hub.fanout.frames`,
`CaliperEnvelope`), headers from the senders, close codes from `CloseCode`, retry settings from this
hub's `Settings`. The prose beside them is docs/contract.md's, in short.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from auth.closecodes import CloseCode
from hub.config import Settings
from hub.delivery.webhook.formats.batch import CONFLICT, GONE, PAUSE, SPLIT
from hub.delivery.webhook.formats.caliper import CaliperEnvelope, CaliperSender
from hub.delivery.webhook.formats.lrs import LrsSender
from hub.delivery.webhook.sender import ABORT_HEADER, ABORT_VALUE, USER_AGENT
from hub.delivery.webhook.signing import WebhookHeaders
from hub.delivery.websocket.endpoint import FILTER_QUERY, RESUME_HEADERS, RESUME_QUERY, TOKEN_QUERY
from hub.fanout.frames import CLIENT_FRAMES, SERVER_FRAMES, BatchBody, EventFrame
from hub.schema import JsonSchema, literal_values, model_fields, schema_of

PATH = "/v1/asyncapi.json"
EVENTS_PATH = "/v1/events"
SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"
WS_BINDING = "0.1.0"
HTTP_BINDING = "0.3.0"
# The endpoint credential's schemes per delivery: an LRS takes a user and password or a token, a Caliper
# endpoint its API key as a bearer token (Caliper 1.2 Sensor API).
LRS_AUTH = ("Basic", "Bearer")
CALIPER_AUTH = ("Bearer",)


def frame_type(model: Any) -> str:
    """The `type` value of a frame model: the name its message goes by."""
    return str(literal_values(model_fields(model)["type"])[0])


def close_codes() -> list[dict[str, Any]]:
    """Every `CloseCode`, with its name and meaning."""
    return [{"code": int(code), "name": code.name, "meaning": code.meaning} for code in CloseCode]


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The document for this hub (its public URL is `settings.issuer`)."""
    schemas: dict[str, JsonSchema] = {}
    messages: dict[str, Any] = {}

    def schema(hint: Any) -> JsonSchema:
        return schema_of(hint, schemas, SCHEMAS)

    def message(name: str, payload: Any, summary: str, headers: JsonSchema | None = None) -> dict[str, str]:
        messages[name] = {"name": name, "summary": summary, "contentType": "application/json",
                          "payload": schema(payload)}
        if headers is not None:
            messages[name]["headers"] = headers
        return {"$ref": MESSAGES + name}

    frames = {frame_type(model): message(frame_type(model), model, _doc(model)) for model in SERVER_FRAMES}
    client_frames = {frame_type(model): message(frame_type(model), model, _doc(model)) for model in CLIENT_FRAMES}
    signed = _headers(WebhookHeaders, {"content-type": "application/json", "user-agent": USER_AGENT}, schema)
    webhook = {
        "webhookEvent": message("webhookEvent", EventFrame, "One event, when batching is off (the socket's frame)",
                                signed),
        "webhookBatch": message("webhookBatch", BatchBody, _doc(BatchBody), signed),
    }
    lrs_headers = _sender_headers(LrsSender("").headers, LRS_AUTH)
    caliper_headers = _sender_headers(CaliperSender("", "").headers, CALIPER_AUTH)
    lrs = {"statements": message(
        "statements", list[dict[str, Any]], "xAPI 1.0.3 statements, in stream order (one id sent once per batch)",
        lrs_headers,
    )}
    caliper = {"envelope": message("envelope", CaliperEnvelope, _doc(CaliperEnvelope), caliper_headers)}

    issuer = urlsplit(settings.issuer)
    hub_server: dict[str, Any] = {
        "host": issuer.netloc,
        "protocol": "wss" if issuer.scheme == "https" else "ws",
        "description": "This hub.",
        "security": [{"$ref": "#/components/securitySchemes/bearer"},
                     {"$ref": "#/components/securitySchemes/accessToken"}],
    }
    if issuer.path.rstrip("/"):
        hub_server["pathname"] = issuer.path.rstrip("/")
    consumer_host = {"host": {"description": "the host of the client's URL"}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "rthub event delivery",
            "version": "1",
            "description": "Open edX events, translated to xAPI or Caliper, as consumers receive them: the "
            f"WebSocket stream at {EVENTS_PATH}, webhooks, and deliveries to an LRS or a Caliper endpoint. "
            "Generated from the hub's code; the admin REST API is described by /admin/api/openapi.json, the "
            "public contract by docs/contract.md.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "hub": hub_server,
            "webhookReceiver": {
                "host": "{host}", "protocol": "https", "variables": consumer_host,
                "description": "The client's webhook_url (http:// where allowed); it verifies the signature.",
            },
            "lrs": {
                "host": "{host}", "protocol": "https", "variables": consumer_host,
                "description": "The client's endpoint_url: an xAPI Learning Record Store.",
                "security": [{"$ref": "#/components/securitySchemes/endpointBasic"},
                             {"$ref": "#/components/securitySchemes/endpointBearer"}],
            },
            "caliperEndpoint": {
                "host": "{host}", "protocol": "https", "variables": consumer_host,
                "description": "The client's endpoint_url: a Caliper 1.2 endpoint.",
                "security": [{"$ref": "#/components/securitySchemes/endpointBearer"}],
            },
        },
        "channels": {
            "events": {
                "address": EVENTS_PATH,
                "title": "The live event stream",
                "description": _EVENTS,
                "servers": [{"$ref": "#/servers/hub"}],
                "messages": {**frames, **client_frames},
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {
                        TOKEN_QUERY: {"type": "string", "description": "the bearer token, for browsers "
                                      "(never logged)"},
                        RESUME_QUERY: schema(model_fields(CLIENT_FRAMES[0])["resume_from"]),
                        FILTER_QUERY: {"type": "string", "contentMediaType": "application/json",
                                       "description": "the `subscribe` frame's filter as JSON: with a cursor, the "
                                       "catch-up is narrowed from its first frame"},
                    }},
                    "headers": {"type": "object", "properties": {
                        "Authorization": {"type": "string", "pattern": "^Bearer ",
                                          "description": "Bearer <access token with the events:read scope>"},
                        **{name: {"type": "string", "description": f"the cursor to resume from, as {RESUME_QUERY} "
                                  "(the query parameter wins)"} for name in _titled(RESUME_HEADERS)},
                    }},
                    "bindingVersion": WS_BINDING,
                }},
                "x-close-codes": close_codes(),
            },
            "webhook": {
                "address": None,
                "title": "The client's webhook_url",
                "servers": [{"$ref": "#/servers/webhookReceiver"}],
                "messages": webhook,
            },
            "lrsStatements": {
                "address": None,
                "title": "The LRS Statements resource: the client's endpoint_url + statements",
                "servers": [{"$ref": "#/servers/lrs"}],
                "messages": lrs,
            },
            "caliperEnvelopes": {
                "address": None,
                "title": "The client's Caliper endpoint_url",
                "servers": [{"$ref": "#/servers/caliperEndpoint"}],
                "messages": caliper,
            },
        },
        "operations": {
            **{
                f"send{name.title()}": {
                    "action": "send", "channel": {"$ref": "#/channels/events"}, "summary": messages[name]["summary"],
                    "messages": [{"$ref": f"#/channels/events/messages/{name}"}],
                }
                for name in frames
            },
            **{
                f"receive{name.title()}": {
                    "action": "receive", "channel": {"$ref": "#/channels/events"},
                    "summary": messages[name]["summary"],
                    "messages": [{"$ref": f"#/channels/events/messages/{name}"}],
                }
                for name in client_frames
            },
            "deliverWebhook": {
                "action": "send",
                "channel": {"$ref": "#/channels/webhook"},
                "summary": "POST events to the client's webhook_url",
                "description": _WEBHOOK,
                "messages": [{"$ref": f"#/channels/webhook/messages/{name}"} for name in webhook],
                "bindings": {"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
                "x-receiver-answers": _webhook_answers(settings),
            },
            "deliverStatements": {
                "action": "send",
                "channel": {"$ref": "#/channels/lrsStatements"},
                "summary": "POST xAPI statements to the client's LRS",
                "description": _ENDPOINTS,
                "messages": [{"$ref": "#/channels/lrsStatements/messages/statements"}],
                "bindings": {"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
                "x-receiver-answers": _endpoint_answers(settings),
            },
            "deliverCaliperEnvelope": {
                "action": "send",
                "channel": {"$ref": "#/channels/caliperEnvelopes"},
                "summary": "POST Caliper envelopes to the client's Caliper endpoint",
                "description": _ENDPOINTS,
                "messages": [{"$ref": "#/channels/caliperEnvelopes/messages/envelope"}],
                "bindings": {"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
                "x-receiver-answers": _endpoint_answers(settings),
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "Client-credentials access token with the events:read scope, from "
                           "/oauth/token, in the upgrade request's Authorization header"},
                "accessToken": {"type": "httpApiKey", "name": TOKEN_QUERY, "in": "query",
                                "description": "The same token as a query parameter, for browsers"},
                "endpointBasic": {"type": "http", "scheme": "basic",
                                  "description": "endpoint_username and endpoint_password (LRS only)"},
                "endpointBearer": {"type": "http", "scheme": "bearer", "description": "endpoint_token"},
            },
        },
    }


def _doc(model: Any) -> str:
    return " ".join((model.__doc__ or "").split())


def _titled(names: tuple[str, ...]) -> list[str]:
    """`last-event-id` -> `Last-Event-ID`, as the contract spells headers."""
    return ["-".join("ID" if part == "id" else part.title() for part in name.split("-")) for name in names]


def _headers(model: Any, fixed: dict[str, str], schema: Any) -> JsonSchema:
    """The headers of a signed webhook: the signature headers' model plus fixed ones."""
    properties = {name: schema(hint) for name, hint in model_fields(model).items()}
    properties.update({name: {"const": value} for name, value in fixed.items()})
    return {"type": "object", "description": _doc(model), "properties": properties, "required": list(properties)}


def _sender_headers(headers: dict[str, str], schemes: tuple[str, ...]) -> JsonSchema:
    """The headers an endpoint sender sets (and the user agent every POST carries); `authorization` carries
    the client's endpoint credential in one of `schemes`."""
    properties: dict[str, JsonSchema] = {}
    for name, value in {**headers, "user-agent": USER_AGENT}.items():
        if name == "authorization":
            properties[name] = {"type": "string", "pattern": f"^({'|'.join(schemes)}) ",
                                "description": f"the client's endpoint credential: {' or '.join(schemes)}"}
        else:
            properties[name] = {"const": value}
    return {"type": "object", "properties": properties, "required": list(properties)}


def _webhook_answers(settings: Settings) -> dict[str, Any]:
    return {
        "2xx": "delivered",
        "410": "the endpoint is gone: delivery to this client stops (webhook_status disabled) until an admin "
        "enables it again",
        "abort": {"header": ABORT_HEADER, "value": ABORT_VALUE,
                  "effect": "any non-2xx answer carrying this header ends that message's retries: it is "
                  "dead-lettered at once"},
        "other": "anything else, a timeout or a connection error: retried on the schedule; Retry-After is "
        "honoured; after the last attempt the message is dead-lettered",
        "retry_schedule_seconds": list(settings.webhook_retry_schedule),
        "disable_after_seconds": settings.webhook_disable_after,
    }


def _endpoint_answers(settings: Settings) -> dict[str, Any]:
    return {
        "2xx": "stored",
        str(CONFLICT): "already stored (a batch is split to find which item)",
        "split": {"statuses": sorted(SPLIT), "effect": "the batch is split in halves until the refused item "
                  "stands alone; it is dead-lettered with the endpoint's message, the rest delivered"},
        "pause": {"statuses": sorted(PAUSE), "effect": "the client is paused, its queue kept, until its endpoint "
                  "credential is rotated"},
        str(GONE): "the endpoint is gone: delivery to this client stops until an admin enables it again",
        "other": "retried on the schedule; Retry-After is honoured; after the last attempt dead-lettered",
        "retry_schedule_seconds": list(settings.webhook_retry_schedule),
    }


_EVENTS = (
    "Authenticate on the upgrade request (Authorization: Bearer, or the access_token query parameter). The "
    "server first sends `welcome` (its cursor: where this socket's live stream starts, to resume from after a "
    "drop before the first event), then `event` frames the client's grant allows, in stream order; a client "
    "may send `subscribe` to narrow them with a filter or to resume from a cursor (better: give the cursor on "
    "the upgrade request, as resume_from, Last-Event-ID or X-Resume-From, with the filter as filter). A cursor "
    "older than the stream's retention gets a `gap` frame first. Text frames only, at most 64 KiB from the "
    "client. The server ends a socket with one of the close codes in x-close-codes."
)
_WEBHOOK = (
    "One event per POST (the socket's `event` frame), or a `batch` of them when the client's "
    "webhook_batch_max is over 1, in stream order, one message in flight per client. Signed per Standard "
    "Webhooks: verify webhook-signature over '<webhook-id>.<webhook-timestamp>.<raw body>' with the client's "
    "webhook_secret; webhook-id is stable across retries. What the receiver's answer does: "
    "x-receiver-answers."
)
_ENDPOINTS = (
    "The events translated for the client, batched (webhook_batch_max), in stream order, with the client's "
    "endpoint credential; the same durable outbox, retries and dead letters as webhooks. What the "
    "endpoint's answer does: x-receiver-answers."
)
