"""The OAuth routes: token, revocation, discovery and JWKS, ready for the hub's app factory."""

from __future__ import annotations

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.clients import SCOPES
from auth.keys import ALGORITHM, SigningKeys
from auth.server import AUTH_METHODS, GRANT_TYPES, OAuthServer
from auth.settings import AuthSettings


def auth_routes(settings: AuthSettings, redis: aioredis.Redis, keys: SigningKeys) -> list[BaseRoute]:
    """Token, revocation, discovery and JWKS."""
    server = OAuthServer(settings, redis, keys)

    async def metadata(request: Request) -> Response:
        return JSONResponse(server_metadata(settings))

    async def jwks(request: Request) -> Response:
        return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    return [
        Route("/oauth/token", server.token, methods=["POST"]),
        Route("/oauth/revoke", server.revoke, methods=["POST"]),
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    ]


def server_metadata(settings: AuthSettings) -> dict[str, object]:
    """RFC 8414 authorization server metadata."""
    base = settings.issuer.rstrip("/")
    return {
        "issuer": settings.issuer,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "service_documentation": f"{base}/admin/api/openapi.json",
    }
