"""The OpenAPI 3.1 description of the admin API, written by hand to match `hub.admin.api`."""

from __future__ import annotations

from typing import Any

from auth.clients import CONSUMER_TYPES, DELIVERIES, GRANT_RULE_KEYS, SCOPES, STATUSES, TRANSLATORS
from hub.config import Settings


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_CLIENT_ID = [{"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_NOT_FOUND = {"404": _json(_ref("Error"), "No such client")}
_SELF = {"409": _json(_ref("Error"), "The calling admin client cannot revoke or delete itself")}
_MOMENT = {"type": ["number", "string"], "description": "unix seconds, or an ISO 8601 time (UTC if no zone)"}
_INVALID = {"422": _json(_ref("ValidationError"), "Invalid input; `field` names the offending field")}
_KEY_MISMATCH = {"500": _json(_ref("Error"), "`key_mismatch`: nothing written, since this hub's endpoint key is "
                                             "not the one the registry records (the message says what to fix)")}


def openapi_document(settings: Settings) -> dict[str, Any]:
    rule = {
        "type": "object",
        "additionalProperties": False,
        "properties": {key: {"type": "array", "items": {"type": "string"}} for key in GRANT_RULE_KEYS},
    }
    editable = {
        "name": {"type": "string", "maxLength": 200},
        "type": {"enum": list(CONSUMER_TYPES)},
        "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
        "translator": {"enum": list(TRANSLATORS)},
        "delivery": {"enum": list(DELIVERIES)},
        "webhook_url": {"type": "string", "format": "uri"},
        "grant": {"type": "array", "items": rule},
        "endpoint_url": {"type": "string", "format": "uri", "description": "LRS xAPI endpoint or Caliper endpoint"},
        "endpoint_username": {"type": "string", "description": "HTTP Basic user for the LRS"},
        "webhook_batch_max": {"type": "integer", "minimum": 1, "maximum": 1000},
        "webhook_batch_wait": {"type": "number", "minimum": 0, "maximum": 60},
    }
    credentials = {
        "endpoint_password": {"type": "string", "writeOnly": True, "description": "stored encrypted, never returned"},
        "endpoint_token": {"type": "string", "writeOnly": True, "description": "stored encrypted, never returned"},
    }
    writable = {**editable, **credentials}
    client = {
        "type": "object",
        "properties": {
            "client_id": {"type": "string"},
            **editable,
            "webhook_secret": {"type": "string", "description": "Standard Webhooks secret, whsec_<base64>"},
            "status": {"enum": list(STATUSES)},
            "previous_secret_expires": {"type": ["integer", "null"], "description": "unix seconds"},
            "webhook_status": {"enum": ["", "disabled"], "description": "disabled: 410 Gone, or the breaker"},
            "webhook_disabled_reason": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "live_connections": {"type": "integer"},
            "endpoint_auth": {"enum": ["", "basic", "bearer"]},
            "endpoint_credential_set": {"type": "boolean"},
            "delivery_status": {"enum": ["ok", "paused", "disabled"]},
            "delivery_status_reason": {"type": "string"},
        },
    }
    with_secret = {"allOf": [_ref("Client"), {"type": "object", "properties": {"client_secret": {"type": "string"}}}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rthub admin API", "version": "1"},
        "servers": [{"url": settings.issuer.rstrip("/") + "/admin/api"}],
        "security": [{"bearer": []}],
        "paths": {
            "/clients": {
                "get": {
                    "summary": "List clients with their live connection counts",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"clients": {"type": "array", "items": _ref("Client")}},
                            },
                            "Clients",
                        ),
                        **_ERRORS,
                    },
                },
                "post": {
                    "summary": "Issue a client; the secret is in this response only",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ClientCreate")}},
                    },
                    "responses": {"201": _json(with_secret, "Created"), **_INVALID, **_KEY_MISMATCH, **_ERRORS},
                },
            },
            "/clients/{client_id}": {
                "parameters": _CLIENT_ID,
                "get": {
                    "summary": "Show a client",
                    "responses": {"200": _json(_ref("Client"), "Client"), **_NOT_FOUND, **_ERRORS},
                },
                "patch": {
                    "summary": "Change name, type, scopes, translator, delivery, webhook or endpoint settings, grant",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ClientUpdate")}},
                    },
                    "responses": {
                        "200": _json(_ref("Client"), "Updated"),
                        **_INVALID,
                        **_NOT_FOUND,
                        **_KEY_MISMATCH,
                        **_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete a client",
                    "responses": {"204": {"description": "Deleted"}, **_NOT_FOUND, **_SELF, **_ERRORS},
                },
            },
            "/clients/{client_id}/rotate-secret": {
                "parameters": _CLIENT_ID,
                "post": {
                    "summary": "New secret; the old one stays valid for the grace period",
                    "responses": {"200": _json(with_secret, "Rotated"), **_NOT_FOUND, **_ERRORS},
                },
            },
            "/clients/{client_id}/endpoint-credential": {
                "parameters": _CLIENT_ID,
                "post": {
                    "summary": "New LRS / Caliper endpoint password or token; resumes a client paused on 401/403",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"endpoint_username": editable["endpoint_username"], **credentials},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("Client"), "Rotated"), **_INVALID, **_NOT_FOUND, **_KEY_MISMATCH, **_ERRORS
                    },
                },
            },
            "/clients/{client_id}/deliveries": {
                "parameters": _CLIENT_ID,
                "get": {
                    "summary": "The client's last webhook / endpoint delivery attempts, newest first",
                    "parameters": [
                        {
                            "name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 50},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"deliveries": {"type": "array", "items": _ref("DeliveryAttempt")}},
                            },
                            "Attempts",
                        ),
                        **_INVALID,
                        **_NOT_FOUND,
                        **_ERRORS,
                    },
                },
            },
            "/clients/{client_id}/revoke": {
                "parameters": _CLIENT_ID,
                "post": {
                    "summary": "Revoke: no new tokens, live sockets closed with 4403",
                    "responses": {"200": _json(_ref("Client"), "Revoked"), **_NOT_FOUND, **_SELF, **_ERRORS},
                },
            },
            "/clients/{client_id}/webhooks/enable": {
                "parameters": _CLIENT_ID,
                "post": {
                    "summary": "Deliver webhooks to the client's endpoint again after a 410 or the breaker disabled it",
                    "responses": {"200": _json(_ref("Client"), "Enabled"), **_NOT_FOUND, **_ERRORS},
                },
            },
            "/connections": {
                "get": {
                    "summary": "Live WebSocket connections per client, over all hub instances",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "connections": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                    }
                                },
                            },
                            "Counts",
                        ),
                        **_ERRORS,
                    },
                },
            },
            "/deadletters": {
                "get": {
                    "summary": "Webhook deliveries that failed their last attempt, oldest first",
                    "parameters": [
                        {"name": "client_id", "in": "query", "required": False, "schema": {"type": "string"}},
                        {
                            "name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        },
                        {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "only those that failed at or after this time (unix seconds or ISO 8601)"},
                        {"name": "until", "in": "query", "required": False, "schema": {"type": "string"},
                         "description": "only those that failed at or before this time (unix seconds or ISO 8601)"},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"deadletters": {"type": "array", "items": {"type": "object"}}},
                            },
                            "Dead letters",
                        ),
                        **_INVALID,
                        **_ERRORS,
                    },
                },
            },
            "/deadletters/replay": {
                "post": {
                    "summary": "Queue dead letters for delivery again (given ids, else a client's, else all), "
                    "optionally only those that failed between `since` and `until`",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "ids": {"type": "array", "items": {"type": "string"}},
                                        "client_id": {"type": "string"},
                                        "since": _MOMENT,
                                        "until": _MOMENT,
                                    },
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"replayed": {"type": "integer"}}}, "How many"
                        ),
                        **_INVALID,
                        **_ERRORS,
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Client-credentials access token with the admin scope, from /oauth/token",
                }
            },
            "schemas": {
                "Client": client,
                "ClientCreate": {
                    "type": "object",
                    "required": ["name", "type", "translator"],
                    "properties": writable,
                    "additionalProperties": False,
                },
                "ClientUpdate": {"type": "object", "properties": writable, "additionalProperties": False},
                "DeliveryAttempt": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "number", "description": "unix seconds"},
                        "status": {"type": ["integer", "null"], "description": "HTTP status; null: no answer"},
                        "latency_ms": {"type": "number"},
                        "error": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "ValidationError": {
                    "type": "object",
                    "properties": {
                        "error": {"const": "validation_error"},
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
            "responses": {
                "Unauthorized": _json(_ref("Error"), "Missing, invalid, expired or revoked token"),
                "Forbidden": _json(_ref("Error"), "Token lacks the admin scope, or its client is revoked"),
            },
        },
    }
