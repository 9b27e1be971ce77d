"""`JwtAuthenticator`: forged, expired and revoked tokens are refused with the contract's close codes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt as pyjwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from auth.identity import AuthError, ClientIdentity
from auth.keys import load_private_key, rotate_signing_key
from auth.websocket import JwtAuthenticator
from hub.config import Settings
from tests.authserver import AuthServer
from tests.waiting import wait_until


def authenticate(settings: Settings, token: str) -> ClientIdentity:
    async def go() -> ClientIdentity:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await JwtAuthenticator(settings, redis).authenticate(token)
        finally:
            await redis.aclose()

    return asyncio.run(go())


def refused(settings: Settings, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        authenticate(settings, token)
    return caught.value


def claims_for(settings: Settings, client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "sub": client_id,
        "client_id": client_id,
        "aud": settings.audience,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "events:read",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def sign(settings: Settings, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the server's real private key, with whatever claims and header we like."""
    key = load_private_key(settings.signing_key_path)
    private = serialization.load_pem_private_key(key.as_pem(private=True), password=None)
    return pyjwt.encode(claims, private, algorithm="ES256", headers={"typ": "at+jwt", "kid": key.kid, **header})


def rotate(settings: Settings) -> str:
    async def go() -> str:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await rotate_signing_key(redis, settings)
        finally:
            await redis.aclose()

    return asyncio.run(go())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_gives_identity(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create(translator="caliper", grant=[{"orgs": ["MITx"]}])
    identity = authenticate(auth_server.settings, auth_server.token(client_id, secret))
    assert identity.client_id == client_id
    assert identity.translator == "caliper"
    assert identity.grant == [{"orgs": ["MITx"]}]
    assert identity.consumer_type == "adaptive"


def test_forged_and_stale_tokens_are_4401(auth_server: AuthServer) -> None:
    settings = auth_server.settings
    client_id, _ = auth_server.create()
    good = claims_for(settings, client_id)
    assert authenticate(settings, sign(settings, good)).client_id == client_id  # the forger's baseline works

    expired = sign(settings, claims_for(settings, client_id, iat=int(time.time()) - 600, exp=int(time.time()) - 60))
    assert refused(settings, expired).close_code == 4401
    assert "expired" in refused(settings, expired).reason
    not_yet = sign(settings, claims_for(settings, client_id, nbf=int(time.time()) + 600))
    assert refused(settings, not_yet).close_code == 4401
    assert refused(settings, sign(settings, claims_for(settings, client_id, aud="someone-else"))).close_code == 4401
    assert (
        refused(settings, sign(settings, claims_for(settings, client_id, iss="https://evil.example"))).close_code
        == 4401
    )
    assert refused(settings, sign(settings, good, kid="no-such-kid")).close_code == 4401
    assert refused(settings, sign(settings, good, typ="JWT")).close_code == 4401
    assert refused(settings, "not.a.jwt").close_code == 4401
    assert refused(settings, "").close_code == 4401

    other_key = ec.generate_private_key(ec.SECP256R1())
    kid = load_private_key(settings.signing_key_path).kid
    wrong_key = pyjwt.encode(good, other_key, algorithm="ES256", headers={"typ": "at+jwt", "kid": kid})
    assert refused(settings, wrong_key).close_code == 4401

    header = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    alg_none = f"{header}.{b64(json.dumps(good).encode())}."
    assert refused(settings, alg_none).close_code == 4401

    public_pem = load_private_key(settings.signing_key_path).as_pem(private=False)
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    signing_input = f"{hs_header}.{b64(json.dumps(good).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert refused(settings, f"{signing_input}.{b64(mac)}").close_code == 4401


def test_revoked_token_is_4401_and_revoked_or_unscoped_client_is_4403(auth_server: AuthServer) -> None:
    settings = auth_server.settings
    client_id, secret = auth_server.create()
    token = auth_server.token(client_id, secret)
    revoked = auth_server.http.post("/oauth/revoke", data={"token": token}, auth=(client_id, secret))
    assert revoked.status_code == 200
    error = refused(settings, token)
    assert (error.close_code, error.reason) == (4401, "token revoked")

    admin_only = auth_server.admin_token()
    assert refused(settings, admin_only).close_code == 4403

    fresh = auth_server.token(client_id, secret)
    headers = {"Authorization": f"Bearer {auth_server.admin_token()}"}
    assert auth_server.http.post(f"/admin/api/clients/{client_id}/revoke", headers=headers).status_code == 200
    assert refused(settings, fresh).close_code == 4403


def test_tokens_signed_before_key_rotation_still_verify(auth_server: AuthServer) -> None:
    settings = auth_server.settings
    client_id, secret = auth_server.create()
    before = auth_server.token(client_id, secret)
    old_kid = pyjwt.get_unverified_header(before)["kid"]
    new_kid = rotate(settings)
    # processes follow the registry's keys within a second
    wait_until(lambda: pyjwt.get_unverified_header(auth_server.token(client_id, secret))["kid"] == new_kid, 20,
               "tokens were never signed with the rotated key")
    after = auth_server.token(client_id, secret)
    assert pyjwt.get_unverified_header(after)["kid"] == new_kid != old_kid
    published = {key["kid"] for key in auth_server.http.get("/.well-known/jwks.json").json()["keys"]}
    assert {old_kid, new_kid} <= published
    assert authenticate(settings, before).client_id == client_id
    assert authenticate(settings, after).client_id == client_id


def test_websocket_close_codes_over_a_real_socket(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    url = auth_server.url.replace("http://", "ws://") + "/v1/events"
    with connect(url, additional_headers={"Authorization": f"Bearer {auth_server.token(client_id, secret)}"}) as ws:
        welcome = json.loads(ws.recv(timeout=5))
    assert welcome == {"type": "welcome", "client_id": client_id, "translator": "xapi"}

    with (
        connect(url, additional_headers={"Authorization": "Bearer junk"}) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    with (
        connect(f"{url}?access_token={auth_server.admin_token()}") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
