"""Bearer-token authentication for `/v1/events`: the hub's `Authenticator` backed by our JWTs.

Both the token and the client's current record must carry `events:read`: removing the scope from a
client ends its sockets (the change notice re-checks them) even while its tokens are unexpired.
"""

from __future__ import annotations

from dataclasses import replace

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from auth.closecodes import CloseCode
from auth.identity import AuthError, ClientIdentity
from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from auth.settings import AuthSettings
from auth.tokens import InvalidToken, is_revoked, token_scopes, verify_token

STREAM_SCOPE = "events:read"


class JwtAuthenticator:
    """A bad or revoked token closes with 4401; a good token for a revoked or unscoped client with 4403."""

    def __init__(self, settings: AuthSettings, redis: aioredis.Redis, keys: SigningKeys | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys or SigningKeys(settings, redis)
        self.registry = ClientRegistry(redis, settings)

    async def authenticate(self, token: str) -> ClientIdentity:
        try:
            claims = await verify_token(token, self.keys, self.settings)
        except InvalidToken as exc:
            raise AuthError(CloseCode.UNAUTHENTICATED, exc.reason) from exc
        try:
            revoked = await is_revoked(self.redis, self.settings, claims["jti"])
            identity = await self.registry.identity(str(claims["client_id"]))
        except (RedisError, OSError) as exc:
            raise AuthError(CloseCode.TRY_AGAIN_LATER, "client registry unavailable; retry") from exc
        if revoked:
            raise AuthError(CloseCode.UNAUTHENTICATED, "token revoked")
        if STREAM_SCOPE not in token_scopes(claims):
            raise AuthError(CloseCode.FORBIDDEN, f"token lacks the {STREAM_SCOPE} scope")
        if identity is None:
            raise AuthError(CloseCode.FORBIDDEN, "client revoked or unknown")
        if STREAM_SCOPE not in identity.scopes:
            raise AuthError(CloseCode.FORBIDDEN, f"client no longer has the {STREAM_SCOPE} scope")
        return replace(identity, expires_at=float(claims["exp"]))
