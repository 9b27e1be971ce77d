"""The admin REST API under `/admin/api/`: bearer tokens with the `admin` scope manage clients."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.clients import ValidationError
from auth.keys import SigningKeys
from auth.registry import ClientNotFound, ClientRegistry
from auth.tokens import InvalidToken, is_revoked, token_scopes, verify_access_token
from hub.admin.openapi import openapi_document
from hub.config import Settings
from hub.control.presence import live_connections
from hub.delivery.webhook.cli import moment
from hub.delivery.webhook.clients import as_shown
from hub.delivery.webhook.deadletters import list_deadletters, replay_deadletters
from hub.delivery.webhook.health import LOG_SIZE, delivery_health, delivery_log

ADMIN_SCOPE = "admin"
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error the API reports as JSON with `status`."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **extra}


def admin_api_routes(settings: Settings, redis: aioredis.Redis, keys: SigningKeys) -> list[BaseRoute]:
    """Routes relative to `/admin/api`."""
    api = AdminApi(settings, redis, keys)
    return [
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
    ]


class AdminApi:
    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: SigningKeys) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.registry = ClientRegistry(redis, settings)

    def guarded(self, handler: Handler) -> Handler:
        """Require an admin token, and turn typed errors into JSON responses."""

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
                return JSONResponse(
                    {"error": "validation_error", "field": exc.field, "message": str(exc)}, status_code=422
                )
            except ClientNotFound as exc:
                return JSONResponse({"error": "not_found", "message": str(exc)}, status_code=404)

        return endpoint

    async def _require_admin(self, request: Request) -> str:
        """The id of the admin client behind the request's token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "invalid_token", "missing bearer token")
        try:
            claims = verify_access_token(token.strip(), self.keys, self.settings)
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

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.settings))

    async def list_clients(self, request: Request) -> Response:
        registered = await self.registry.list_all()
        live = await live_connections(self.redis, self.settings, [client.client_id for client in registered])
        health = await delivery_health(self.redis, self.settings, [client.client_id for client in registered])
        clients = [
            {
                **as_shown(client, self.settings).public(),
                "live_connections": live.get(client.client_id, 0),
                "delivery_health": health.get(client.client_id),
            }
            for client in registered
        ]
        return JSONResponse({"clients": clients})

    async def create_client(self, request: Request) -> Response:
        client, secret = await self.registry.create(**await _json_object(request))
        return JSONResponse({**as_shown(client, self.settings).public(), "client_secret": secret}, status_code=201)

    async def show_client(self, request: Request) -> Response:
        client = await self.registry.require(request.path_params["client_id"])
        live = await live_connections(self.redis, self.settings, [client.client_id])
        health = await delivery_health(self.redis, self.settings, [client.client_id])
        return JSONResponse(
            {
                **as_shown(client, self.settings).public(),
                "live_connections": live.get(client.client_id, 0),
                "delivery_health": health.get(client.client_id),
            }
        )

    async def update_client(self, request: Request) -> Response:
        client = await self.registry.update(request.path_params["client_id"], **await _json_object(request))
        return JSONResponse(as_shown(client, self.settings).public())

    async def delete_client(self, request: Request) -> Response:
        _not_self(request)
        await self.registry.delete(request.path_params["client_id"])
        return Response(status_code=204)

    async def rotate_secret(self, request: Request) -> Response:
        client, secret = await self.registry.rotate_secret(request.path_params["client_id"])
        return JSONResponse({**as_shown(client, self.settings).public(), "client_secret": secret})

    async def rotate_endpoint(self, request: Request) -> Response:
        client = await self.registry.rotate_endpoint_credential(
            request.path_params["client_id"], **await _json_object(request)
        )
        return JSONResponse(as_shown(client, self.settings).public())

    async def deliveries(self, request: Request) -> Response:
        raw_limit = request.query_params.get("limit", str(LOG_SIZE))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LOG_SIZE:
            raise ValidationError("limit", f"must be an integer from 1 to {LOG_SIZE}")
        client = await self.registry.require(request.path_params["client_id"])
        attempts = await delivery_log(self.redis, self.settings, client.client_id, int(raw_limit))
        return JSONResponse({"deliveries": attempts})

    async def revoke_client(self, request: Request) -> Response:
        _not_self(request)
        client = await self.registry.revoke(request.path_params["client_id"])
        return JSONResponse(as_shown(client, self.settings).public())

    async def connections(self, request: Request) -> Response:
        ids = [client.client_id for client in await self.registry.list_all()]
        return JSONResponse({"connections": await live_connections(self.redis, self.settings, ids)})

    async def deadletters(self, request: Request) -> Response:
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise ValidationError("limit", "must be an integer from 1 to 1000")
        client_id = request.query_params.get("client_id") or None
        since, until = (_moment(name, request.query_params.get(name)) for name in ("since", "until"))
        records = await list_deadletters(self.redis, self.settings, client_id, int(raw_limit), since, until)
        return JSONResponse({"deadletters": records})

    async def replay(self, request: Request) -> Response:
        body = await _json_object(request)
        ids, client_id = body.get("ids"), body.get("client_id")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(item, str) for item in ids)):
            raise ValidationError("ids", "must be a list of dead-letter ids")
        if client_id is not None and not isinstance(client_id, str):
            raise ValidationError("client_id", "must be a string")
        unknown = sorted(set(body) - {"ids", "client_id", "since", "until"})
        if unknown:
            raise ValidationError(unknown[0], "unknown field; allowed: ids, client_id, since, until")
        since, until = (_moment(name, body.get(name)) for name in ("since", "until"))
        replayed = await replay_deadletters(self.redis, self.settings, ids, client_id, since, until)
        return JSONResponse({"replayed": replayed})

    async def enable_webhooks(self, request: Request) -> Response:
        """Deliver to a client's endpoint again after a 410 or the breaker disabled it."""
        client_id = request.path_params["client_id"]
        await self.registry.require(client_id)
        await self.registry.enable_webhooks(client_id)
        return JSONResponse(as_shown(await self.registry.require(client_id), self.settings).public())


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
