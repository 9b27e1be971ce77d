"""RFC 9068 JWT access tokens: issued through authlib's generator, verified with joserfc (authlib's JOSE
layer), revoked by remembering their `jti` in Redis until they would have expired anyway."""

from __future__ import annotations

import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from auth.keys import ALGORITHM, SigningKeys
from auth.settings import AuthSettings
from rthub_lms.keys import revoked_token

TOKEN_TYPE = "at+jwt"
_LEEWAY_SECONDS = 10


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKid(InvalidToken):
    """The token names a kid the registry does not publish (as far as this process knows)."""


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """authlib's RFC 9068 generator, signing with the current key and naming our audience."""

    def __init__(self, settings: AuthSettings, keys: SigningKeys) -> None:
        super().__init__(issuer=settings.issuer, alg=ALGORITHM, expires_generator=settings.token_lifetime)
        self.keys = keys
        self.audience = settings.audience

    def get_jwks(self) -> KeySet:
        """Only the signing key: joserfc then signs with it and names its `kid` in the header."""
        return KeySet([self.keys.signing_key()])

    def get_audiences(self, client: Any, user: Any, scope: str) -> str:
        return self.audience

    def get_jti(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        """128 random bits from `secrets` (authlib's default draws 16 characters one `SystemRandom`
        call each: ~40 µs of a token request, for 95 bits)."""
        return secrets.token_urlsafe(16)


def verify_access_token(token: str, keys: SigningKeys, settings: AuthSettings) -> dict[str, Any]:
    """Signature (ES256 only, key chosen by `kid`), `typ`, `iss`, `aud`, `exp`, `nbf`; returns the claims.

    Blocking-free and fast (one ECDSA verify); revocation and client status are the caller's job
    because they need Redis.
    """
    try:
        header = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError, UnicodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"unsupported algorithm {header.get('alg')!r}")
    if str(header.get("typ", "")).lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
        raise InvalidToken("not an access token (typ must be at+jwt)")
    key = _key_for(keys, header.get("kid"))
    try:
        decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_SECONDS,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.audience},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise InvalidToken(_describe(exc)) from exc
    return decoded.claims


async def verify_token(token: str, keys: SigningKeys, settings: AuthSettings) -> dict[str, Any]:
    """`verify_access_token`, reading the registry's keys once more when the token names a kid this
    process does not know yet (another hub may have started signing with a new key a moment ago)."""
    try:
        return verify_access_token(token, keys, settings)
    except UnknownKid:
        await keys.recheck()
        return verify_access_token(token, keys, settings)


def token_scopes(claims: dict[str, Any]) -> set[str]:
    scope = claims.get("scope") or ""
    return set(scope.split()) if isinstance(scope, str) else set()


async def revoke_jti(redis: aioredis.Redis, settings: AuthSettings, jti: str, expires_at: int) -> None:
    """Remember a revoked token only as long as it could still be presented."""
    ttl = max(1, int(expires_at - time.time()) + _LEEWAY_SECONDS)
    await redis.set(revoked_token(settings, jti), "1", ex=ttl)


async def is_revoked(redis: aioredis.Redis, settings: AuthSettings, jti: str) -> bool:
    return bool(await redis.exists(revoked_token(settings, jti)))


def _key_for(keys: SigningKeys, kid: Any) -> ECKey:
    key = keys.key_for(kid)
    if key is None:
        raise UnknownKid("unknown signing key (kid)")
    return key


def _describe(exc: JoseError) -> str:
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "token expired"
    if name == "BadSignatureError":
        return "bad signature"
    return f"invalid token: {exc.description or exc.error}"
