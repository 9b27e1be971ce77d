"""The admin REST API under `/admin/api/`: bearer tokens with the `admin` scope manage clients."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.clients import (
    Client,
    ClientFields,
    EndpointCredential,
    NewClient,
    PublicClient,
    ValidationError,
    grant_warnings,
)
from auth.keyring import KeyMismatch
from auth.keys import SigningKeys
from auth.registry import ClientNotFound, ClientRegistry
from auth.tokens import InvalidToken, is_revoked, token_scopes, verify_token
from hub.admin.delivery import delivery_facts, disabled_by, settle_replay
from hub.admin.models import (
    DEFAULT_DEADLETTERS,
    MAX_DEADLETTERS,
    ClientDetail,
    ClientList,
    ClientView,
    ClientWithSecret,
    Connections,
    CreatedClient,
    DeadLetters,
    DeadLettersQuery,
    DeliveriesQuery,
    DeliveryLog,
    Document,
    ErrorBody,
    FieldError,
    Replayed,
    ReplayRequest,
    RetryNow,
    UpdatedClient,
)
from hub.admin.openapi import Undocumented, openapi_document, operation, operation_of
from hub.config import Settings
from hub.control.presence import live_connections
from hub.delivery.webhook import retry
from hub.delivery.webhook.cli import moment
from hub.delivery.webhook.clients import as_shown
from hub.delivery.webhook.deadletters import list_deadletters, replay_by_client
from hub.delivery.webhook.health import LOG_SIZE, delivery_health, delivery_log

ADMIN_SCOPE = "admin"
SELF_REFUSED = "The calling admin client cannot revoke or delete itself"
KEY_MISMATCH = ("`key_mismatch`: this hub's endpoint key is not the one the registry records, so an endpoint "
                "credential it encrypted could not be read by the others; nothing was written")
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error the API reports as JSON with `status`."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: ErrorBody = {"error": error, "message": message, **extra}  # type: ignore[typeddict-item]


def admin_api_routes(settings: Settings, redis: aioredis.Redis, keys: SigningKeys) -> list[BaseRoute]:
    """Routes relative to `/admin/api`."""
    api = AdminApi(settings, redis, keys)
    api.routes = [
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/clients", api.guarded(api.list_clients), methods=["GET"]),
        Route("/clients", api.guarded(api.create_client), methods=["POST"]),
        Route("/clients/{client_id}", api.guarded(api.show_client), methods=["GET"]),
        Route("/clients/{client_id}", api.guarded(api.update_client), methods=["PATCH"]),
        Route("/clients/{client_id}", api.guarded(api.delete_client), methods=["DELETE"]),
        Route("/clients/{client_id}/rotate-secret", api.guarded(api.rotate_secret), methods=["POST"]),
        Route("/clients/{client_id}/revoke", api.guarded(api.revoke_client), methods=["POST"]),
        Route("/clients/{client_id}/endpoint-credential", api.guarded(api.rotate_endpoint), methods=["POST"]),
        Route("/clients/{client_id}/deliveries", api.guarded(api.deliveries), methods=["GET"]),
        Route("/connections", api.guarded(api.connections), methods=["GET"]),
        Route("/deadletters", api.guarded(api.deadletters), methods=["GET"]),
        Route("/deadletters/replay", api.guarded(api.replay), methods=["POST"]),
        Route("/clients/{client_id}/webhooks/enable", api.guarded(api.enable_webhooks), methods=["POST"]),
        Route("/clients/{client_id}/webhooks/disable", api.guarded(api.disable_webhooks), methods=["POST"]),
        Route("/clients/{client_id}/retry-now", api.guarded(api.retry_now), methods=["POST"]),
    ]
    return api.routes


class AdminApi:
    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: SigningKeys) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.registry = ClientRegistry(redis, settings)
        self.routes: list[BaseRoute] = []
        self._document: Document | None = None

    def guarded(self, handler: Handler) -> Handler:
        """Require an admin token, and turn typed errors into JSON responses."""
        described = operation_of(handler)
        if described is None:
            raise Undocumented(f"{handler.__name__} has no @operation")

        async def endpoint(request: Request) -> Response:
            try:
                request.state.admin_client_id = await self._require_admin(request)
                return await handler(request)
            except ApiError as exc:
                headers = {}
                if exc.status == 401:
                    headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc}"'
                elif exc.status == 403:
                    headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{ADMIN_SCOPE}"'
                return JSONResponse(exc.body, status_code=exc.status, headers=headers)
            except ValidationError as exc:
                invalid: FieldError = {"error": "validation_error", "field": exc.field, "message": str(exc)}
                return JSONResponse(invalid, status_code=422)
            except ClientNotFound as exc:
                missing: ErrorBody = {"error": "not_found", "message": str(exc)}
                return JSONResponse(missing, status_code=404)
            except KeyMismatch as exc:  # this hub's endpoint key is not the registry's: nothing was written
                mismatch: ErrorBody = {"error": "key_mismatch", "message": str(exc)}
                return JSONResponse(mismatch, status_code=500)

        endpoint.operation = replace(described, secured=True)  # type: ignore[attr-defined]
        return endpoint

    async def _require_admin(self, request: Request) -> str:
        """The id of the admin client behind the request's token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "invalid_token", "missing bearer token")
        try:
            claims = await verify_token(token.strip(), self.keys, self.settings)
        except InvalidToken as exc:
            raise ApiError(401, "invalid_token", exc.reason) from exc
        if await is_revoked(self.redis, self.settings, claims["jti"]):
            raise ApiError(401, "invalid_token", "token revoked")
        if ADMIN_SCOPE not in token_scopes(claims):
            raise ApiError(403, "insufficient_scope", f"the {ADMIN_SCOPE} scope is required")
        client = await self.registry.get(str(claims["client_id"]))
        if client is None or not client.active:
            raise ApiError(403, "forbidden", "the admin client is revoked or unknown")
        if ADMIN_SCOPE not in client.scopes:  # removed since the token was issued: effective at once
            raise ApiError(403, "insufficient_scope", f"the client no longer has the {ADMIN_SCOPE} scope")
        return client.client_id

    @operation("This document (no token needed)", {200: Document})
    async def openapi(self, request: Request) -> Response:
        if self._document is None:
            self._document = openapi_document(self.routes, self.settings)
        return JSONResponse(self._document)

    async def _views(self, clients: list[Client]) -> list[ClientView]:
        """Clients with their live socket counts and delivery health."""
        ids = [client.client_id for client in clients]
        live = await live_connections(self.redis, self.settings, ids)
        health = await delivery_health(self.redis, self.settings, ids)
        return [
            {**as_shown(client, self.settings).public(),  # type: ignore[typeddict-item]
             "live_connections": live.get(client.client_id, 0), "delivery_health": health.get(client.client_id)}
            for client in clients
        ]

    @operation("List clients with their live connection counts and delivery health", {200: ClientList})
    async def list_clients(self, request: Request) -> Response:
        listed: ClientList = {"clients": await self._views(await self.registry.list_all())}
        return JSONResponse(listed)

    @operation("Issue a client; the secret is in this response only", {201: CreatedClient}, body=NewClient,
               errors={500: KEY_MISMATCH})
    async def create_client(self, request: Request) -> Response:
        body = await _json_object(request)
        client, secret = await self.registry.create(**body)
        created: CreatedClient = {  # type: ignore[typeddict-item]
            **as_shown(client, self.settings).public(), "client_secret": secret, "warnings": grant_warnings(body)
        }
        return JSONResponse(created, status_code=201)

    @operation("Show a client, with what waits for it: queue, the batch being retried, dead letters",
               {200: ClientDetail})
    async def show_client(self, request: Request) -> Response:
        client = await self.registry.require(request.path_params["client_id"])
        detail: ClientDetail = {  # type: ignore[typeddict-item]
            **(await self._views([client]))[0], **await delivery_facts(self.redis, self.settings, client)
        }
        return JSONResponse(detail)

    @operation(
        "Change name, type, scopes, translator, delivery, webhook or endpoint settings, grant",
        {200: UpdatedClient}, body=ClientFields, errors={500: KEY_MISMATCH},
    )
    async def update_client(self, request: Request) -> Response:
        body = await _json_object(request)
        client = await self.registry.update(request.path_params["client_id"], **body)
        updated: UpdatedClient = {  # type: ignore[typeddict-item]
            **as_shown(client, self.settings).public(), "warnings": grant_warnings(body)
        }
        return JSONResponse(updated)

    @operation("Delete a client", {204: None}, errors={409: SELF_REFUSED})
    async def delete_client(self, request: Request) -> Response:
        _not_self(request)
        await self.registry.delete(request.path_params["client_id"])
        return Response(status_code=204)

    @operation("New secret; the old one stays valid for the grace period", {200: ClientWithSecret})
    async def rotate_secret(self, request: Request) -> Response:
        client, secret = await self.registry.rotate_secret(request.path_params["client_id"])
        rotated: ClientWithSecret = {  # type: ignore[typeddict-item]
            **as_shown(client, self.settings).public(), "client_secret": secret
        }
        return JSONResponse(rotated)

    @operation(
        "New LRS / Caliper endpoint password or token; resumes a client paused on 401/403",
        {200: PublicClient}, body=EndpointCredential, errors={500: KEY_MISMATCH},
    )
    async def rotate_endpoint(self, request: Request) -> Response:
        client = await self.registry.rotate_endpoint_credential(
            request.path_params["client_id"], **await _json_object(request)
        )
        return JSONResponse(as_shown(client, self.settings).public())

    @operation("The client's last webhook / endpoint delivery attempts, newest first", {200: DeliveryLog},
               query=DeliveriesQuery)
    async def deliveries(self, request: Request) -> Response:
        raw_limit = request.query_params.get("limit", str(LOG_SIZE))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LOG_SIZE:
            raise ValidationError("limit", f"must be an integer from 1 to {LOG_SIZE}")
        client = await self.registry.require(request.path_params["client_id"])
        log: DeliveryLog = {"deliveries": await delivery_log(self.redis, self.settings, client.client_id,
                                                             int(raw_limit))}
        return JSONResponse(log)

    @operation("Revoke: no new tokens, live sockets closed with 4403", {200: PublicClient},
               errors={409: SELF_REFUSED})
    async def revoke_client(self, request: Request) -> Response:
        _not_self(request)
        client = await self.registry.revoke(request.path_params["client_id"])
        return JSONResponse(as_shown(client, self.settings).public())

    @operation("Live WebSocket connections per client, over all hub instances", {200: Connections})
    async def connections(self, request: Request) -> Response:
        ids = [client.client_id for client in await self.registry.list_all()]
        counts: Connections = {"connections": await live_connections(self.redis, self.settings, ids)}
        return JSONResponse(counts)

    @operation("Webhook deliveries that failed their last attempt, oldest first", {200: DeadLetters},
               query=DeadLettersQuery)
    async def deadletters(self, request: Request) -> Response:
        raw_limit = request.query_params.get("limit", str(DEFAULT_DEADLETTERS))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_DEADLETTERS:
            raise ValidationError("limit", f"must be an integer from 1 to {MAX_DEADLETTERS}")
        client_id = request.query_params.get("client_id") or None
        since, until = (_moment(name, request.query_params.get(name)) for name in ("since", "until"))
        records = await list_deadletters(self.redis, self.settings, client_id, int(raw_limit), since, until)
        listed: DeadLetters = {"deadletters": records}
        return JSONResponse(listed)

    @operation("Queue dead letters for delivery again; with `enable`, enable disabled endpoints too",
               {200: Replayed}, body=ReplayRequest, body_required=False)
    async def replay(self, request: Request) -> Response:
        body = await _json_object(request)
        ids, client_id, enable = body.get("ids"), body.get("client_id"), body.get("enable", False)
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(item, str) for item in ids)):
            raise ValidationError("ids", "must be a list of dead-letter ids")
        if client_id is not None and not isinstance(client_id, str):
            raise ValidationError("client_id", "must be a string")
        if not isinstance(enable, bool):
            raise ValidationError("enable", "must be true or false")
        allowed = tuple(ReplayRequest.__annotations__)
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ValidationError(unknown[0], f"unknown field; allowed: {', '.join(allowed)}")
        since, until = (_moment(name, body.get(name)) for name in ("since", "until"))
        moved = await replay_by_client(self.redis, self.settings, ids, client_id, since, until)
        replayed: Replayed = await settle_replay(self.registry, moved, enable)
        return JSONResponse(replayed)

    @operation("Deliver to the client's endpoint again after a 410 or the breaker disabled it", {200: PublicClient})
    async def enable_webhooks(self, request: Request) -> Response:
        """Deliver to a client's endpoint again after a 410 or the breaker disabled it."""
        client_id = request.path_params["client_id"]
        await self.registry.require(client_id)
        await self.registry.enable_webhooks(client_id)
        return JSONResponse(as_shown(await self.registry.require(client_id), self.settings).public())


    @operation("Stop delivering to the client's endpoint until it is enabled again; nothing queued is lost",
               {200: PublicClient})
    async def disable_webhooks(self, request: Request) -> Response:
        client_id = request.path_params["client_id"]
        await self.registry.require(client_id)
        await self.registry.disable_webhooks(client_id, disabled_by(request.state.admin_client_id))
        return JSONResponse(as_shown(await self.registry.require(client_id), self.settings).public())

    @operation("Attempt the batch that waits for its next retry now, on whichever hub instance delivers it",
               {200: RetryNow})
    async def retry_now(self, request: Request) -> Response:
        client = await self.registry.require(request.path_params["client_id"])
        retrying: RetryNow = {"retrying": await retry.retry_now(self.redis, self.settings, client.client_id)}
        return JSONResponse(retrying)


def _moment(name: str, value: Any) -> float | None:
    """`since` / `until`: unix seconds (number or numeric string) or ISO 8601 text; absent is None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return moment(value)
        except (ValueError, OverflowError):
            pass
    raise ValidationError(name, "must be unix seconds or an ISO 8601 time (up to year 9999)")


def _not_self(request: Request) -> None:
    """An admin cannot lock itself out: revoking or deleting the calling client is refused."""
    if request.path_params["client_id"] == request.state.admin_client_id:
        raise ApiError(409, "conflict", "a client cannot revoke or delete itself; use another admin client")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    return body
