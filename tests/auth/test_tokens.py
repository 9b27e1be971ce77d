"""Token endpoint, discovery, JWKS and revocation over real HTTP against a real uvicorn and Redis."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from rthub_lms import keys as rkeys
from tests.authserver import AuthServer


def test_client_secret_basic_issues_rfc9068_token_verified_by_independent_library(
    auth_server: AuthServer,
) -> None:
    client_id, secret = auth_server.create()
    response = auth_server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == auth_server.settings.token_lifetime
    assert body["scope"] == "events:read"
    token = body["access_token"]

    jwks = pyjwt.PyJWKClient(f"{auth_server.url}/.well-known/jwks.json")
    signing_key = jwks.get_signing_key_from_jwt(token)
    claims = pyjwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience="rthub",
        issuer=auth_server.settings.issuer,
        options={"require": ["exp", "iat", "jti", "sub", "aud", "iss"]},
    )
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"] == signing_key.key_id
    assert claims["sub"] == client_id
    assert claims["client_id"] == client_id
    assert claims["scope"] == "events:read"
    assert claims["exp"] - claims["iat"] == auth_server.settings.token_lifetime


def test_client_secret_post_works_and_scope_can_be_narrowed(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create(scopes=["events:read", "admin"])
    response = auth_server.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "admin",
        },
    )
    assert response.status_code == 200, response.text
    claims = pyjwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "admin"


def test_scope_the_client_does_not_have_is_invalid_scope(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    response = auth_server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=(client_id, secret)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("how", ["basic", "post"])
def test_bad_secret_is_401_invalid_client(auth_server: AuthServer, how: str) -> None:
    client_id, _ = auth_server.create()
    if how == "basic":
        response = auth_server.http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, "nope")
        )
    else:
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "nope"}
        response = auth_server.http.post("/oauth/token", data=data)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"


def test_unknown_client_and_revoked_client_are_invalid_client(auth_server: AuthServer) -> None:
    response = auth_server.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("cl_nobody", "x"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"

    client_id, secret = auth_server.create()
    admin = auth_server.admin_token()
    revoked = auth_server.http.post(
        f"/admin/api/clients/{client_id}/revoke", headers={"Authorization": f"Bearer {admin}"}
    )
    assert revoked.status_code == 200
    response = auth_server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_wrong_grant_type_is_unsupported_grant_type(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    response = auth_server.http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "u", "password": "p"},
        auth=(client_id, secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_grant_type_is_invalid_request(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    response = auth_server.http.post("/oauth/token", data={"scope": "events:read"}, auth=(client_id, secret))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_metadata_is_rfc8414(auth_server: AuthServer) -> None:
    metadata = auth_server.http.get("/.well-known/oauth-authorization-server").json()
    issuer = auth_server.settings.issuer
    assert metadata["issuer"] == issuer
    assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert set(metadata["scopes_supported"]) == {"events:read", "admin"}


def test_secret_rotation_keeps_old_secret_for_grace_period(auth_server: AuthServer) -> None:
    client_id, old = auth_server.create()
    admin = auth_server.admin_token()
    rotated = auth_server.http.post(
        f"/admin/api/clients/{client_id}/rotate-secret", headers={"Authorization": f"Bearer {admin}"}
    )
    assert rotated.status_code == 200
    new = rotated.json()["client_secret"]
    assert new != old
    assert auth_server.token(client_id, new)
    assert auth_server.token(client_id, old)  # still inside the 2 s grace period of this fixture
    time.sleep(auth_server.settings.secret_grace_period + 0.2)  # time passing: the grace period runs out
    response = auth_server.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, old))
    assert response.status_code == 401
    assert auth_server.token(client_id, new)


def test_revocation_endpoint_marks_jti_revoked_until_expiry(auth_server: AuthServer) -> None:
    import redis

    client_id, secret = auth_server.create()
    token = auth_server.token(client_id, secret)
    other_id, other_secret = auth_server.create()
    refused = auth_server.http.post("/oauth/revoke", data={"token": token}, auth=(other_id, other_secret))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"

    response = auth_server.http.post(
        "/oauth/revoke", data={"token": token, "token_type_hint": "access_token"}, auth=(client_id, secret)
    )
    assert response.status_code == 200
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    ttl = redis.Redis.from_url(auth_server.settings.redis_url).ttl(rkeys.revoked_token(auth_server.settings, jti))
    assert 0 < ttl <= auth_server.settings.token_lifetime + 10

    garbage = auth_server.http.post("/oauth/revoke", data={"token": "not-a-token"}, auth=(client_id, secret))
    assert garbage.status_code == 200  # RFC 7009 §2.2: invalid tokens do not cause an error
    unauthenticated = auth_server.http.post("/oauth/revoke", data={"token": token}, auth=(client_id, "wrong"))
    assert unauthenticated.status_code == 401
