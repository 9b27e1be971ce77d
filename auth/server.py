"""authlib's OAuth 2.0 authorization server adapted to Starlette.

authlib is synchronous. For the token endpoint the claimed client is read from the async registry
first, so authlib's work (a SHA-256 check and one ES256 signature) runs right on the event loop
without thread hops. Two cases still run in a worker thread (`anyio.to_thread`), hopping back to the
loop with `anyio.from_thread.run` for Redis: a client whose secret still has a legacy scrypt hash (it
is upgraded once the secret matched), and revocation (rare; it writes to Redis from authlib's code).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.to_thread
import redis.asyncio as aioredis
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientAuthentication,
    ClientMixin,
    InsecureTransportError,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from auth.clients import SCOPES, Client
from auth.keys import NoSigningKey, SigningKeys
from auth.ratelimit import FailureLimiter
from auth.registry import ClientRegistry, has_legacy_hash, matched_hash
from auth.settings import AuthSettings
from auth.tokens import AccessTokenGenerator, InvalidToken, revoke_jti, verify_access_token

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# A legacy scrypt check holds 16 MiB and a core for ~50 ms: run as many as there are cores, queue the rest.
SECRET_CHECKS_AT_ONCE = max(2, os.cpu_count() or 2)
GRANT_TYPES = ["client_credentials"]


class FormPayload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data = dict(items)
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    """An already-read Starlette form request, usable from a worker thread."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], items: list[tuple[str, str]]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = FormPayload(items)
        # The claimed client, read from the registry before authlib runs (None: look it up then).
        self.prefetched: dict[str, OAuthClient] | None = None

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class OAuthClient(ClientMixin):
    """A registry client as authlib sees it: confidential, client-credentials only."""

    def __init__(self, client: Client) -> None:
        self.client = client
        # Which stored hash the last good secret matched, and that secret, for a legacy-hash upgrade.
        self.matched: tuple[str, str] | None = None

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """No scope asked: everything the client has; otherwise all of what it asks, or nothing."""
        if not scope:
            return " ".join(self.client.scopes)
        requested = scope.split()
        return " ".join(requested) if set(requested) <= set(self.client.scopes) else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        field = matched_hash(self.client, client_secret)
        if field is not None:
            self.matched = (field, client_secret)
        return field is not None

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS


class AccessToken:
    """A verified token presented for revocation."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    def check_client(self, client: OAuthClient) -> bool:
        return self.claims.get("client_id") == client.get_client_id()


class JwtRevocationEndpoint(RevocationEndpoint):
    """RFC 7009 for self-contained JWTs: a revoked `jti` is remembered in Redis until expiry."""

    CLIENT_AUTH_METHODS = AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, server: OAuthServer) -> None:
        super().__init__(server)
        self.oauth = server

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | None:
        try:
            return AccessToken(verify_access_token(token_string, self.oauth.keys, self.oauth.settings))
        except InvalidToken:
            return None

    def revoke_token(self, token: AccessToken, request: OAuth2Request) -> None:
        anyio.from_thread.run(
            revoke_jti, self.oauth.redis, self.oauth.settings, token.claims["jti"], token.claims["exp"]
        )


class OAuthServer(AuthorizationServer):
    """Token and revocation endpoints over the Redis client registry."""

    def __init__(self, settings: AuthSettings, redis: aioredis.Redis, keys: SigningKeys) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.registry = ClientRegistry(redis, settings)
        self.register_grant(ClientCredentialsGrant)
        self.register_token_generator("default", AccessTokenGenerator(settings, keys))
        self.register_endpoint(JwtRevocationEndpoint(self))
        self.limiter = anyio.CapacityLimiter(SECRET_CHECKS_AT_ONCE)
        self.failures = FailureLimiter(redis, settings)

    def query_client(self, client_id: str) -> OAuthClient | None:
        """Revoked clients are treated as unknown: they get `invalid_client`, like a wrong secret."""
        client = anyio.from_thread.run(self.registry.get, client_id)
        return OAuthClient(client) if client is not None and client.active else None

    def authenticate_client(self, request: FormRequest, methods: list[str], endpoint: str = "token") -> OAuthClient:
        """authlib's client authentication, served from the prefetched client when there is one."""
        if request.prefetched is None:
            return super().authenticate_client(request, methods, endpoint)
        return ClientAuthentication(request.prefetched.get)(request, methods, endpoint)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """JWT access tokens are self-contained: there is nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib calls this on every grant; rthub has no listeners."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        return Response(json.dumps(body), status_code=status, headers=dict(headers), media_type="application/json")

    async def token(self, request: Request) -> Response:
        try:
            form_request = await self._form_request(request)
        except InsecureTransportError as error:
            return self.handle_response(*error())
        if not form_request.payload.grant_type:
            return self.handle_response(*InvalidRequestError("Missing 'grant_type' parameter.")())
        return await self._authenticated(request, form_request, lambda: self._issue(form_request))

    async def _issue(self, form_request: FormRequest) -> Response:
        """Prefetch the claimed client, then let authlib answer: inline, or in a thread for a legacy hash."""
        claimed = claimed_client_id(form_request)
        client = await self.registry.get(claimed) if claimed else None
        oauth_client = OAuthClient(client) if client is not None and client.active else None
        form_request.prefetched = {claimed: oauth_client} if claimed and oauth_client else {}
        if oauth_client is None or not has_legacy_hash(oauth_client.client):
            return self.create_token_response(form_request)
        response = await anyio.to_thread.run_sync(self.create_token_response, form_request, limiter=self.limiter)
        if response.status_code == 200 and oauth_client.matched is not None:
            await self.registry.upgrade_hash(oauth_client.client, *oauth_client.matched)
        return response

    async def revoke(self, request: Request) -> Response:
        try:
            form_request = await self._form_request(request)
        except InsecureTransportError as error:
            return self.handle_response(*error())
        return await self._authenticated(
            request, form_request,
            lambda: anyio.to_thread.run_sync(
                self.create_endpoint_response, "revocation", form_request, limiter=self.limiter
            ),
        )

    async def _authenticated(
        self, request: Request, form_request: FormRequest, handle: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run an endpoint that authenticates the client: refuse while its failure budget is spent
        (429), count a failed authentication (401), and answer 503 rather than 500 when Redis is away."""
        client_id = claimed_client_id(form_request)
        address = request.client.host if request.client else None
        wait = await self.failures.retry_after(client_id, address)
        if wait:
            body = {"error": "too_many_requests", "error_description": "too many failed authentications; retry later"}
            headers = [("Retry-After", str(wait)), ("Cache-Control", "no-store")]
            return self.handle_response(429, body, headers)
        try:
            response = await handle()
        except (RedisError, OSError):
            body = {"error": "temporarily_unavailable", "error_description": "client registry unavailable"}
            return self.handle_response(503, body, [("Retry-After", "5"), ("Cache-Control", "no-store")])
        except NoSigningKey:  # its log and metrics say why (paths are not for clients); another hub may sign
            body = {"error": "temporarily_unavailable", "error_description": "this hub cannot sign tokens now"}
            return self.handle_response(503, body, [("Retry-After", "5"), ("Cache-Control", "no-store")])
        if response.status_code == 401:
            await self.failures.failed(client_id, address)
        return response

    async def _form_request(self, request: Request) -> FormRequest:
        form = await request.form()
        items = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
        # authlib refuses plain-http URIs; the issuer is the public URL a TLS proxy answers on.
        uri = self.settings.issuer.rstrip("/") + request.url.path
        return FormRequest(request.method, uri, request.headers, items)


def claimed_client_id(request: FormRequest) -> str | None:
    """The client id a request claims (Basic header or form), before anything is verified."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(decoded.partition(":")[0]) or None
    return request.payload.data.get("client_id") or None
