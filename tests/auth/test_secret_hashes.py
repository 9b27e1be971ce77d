"""Client secrets are 256-bit random values, so they are stored as `sha256$` hashes
(fast), and hashes written by earlier versions (`scrypt$`) keep working and are rewritten on first use."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

import redis

from auth.passwords import hash_secret, new_secret, verify_secret
from rthub_lms import keys as rkeys
from tests.authserver import AuthServer

GRANT = {"grant_type": "client_credentials"}


def scrypt_hash(secret: str) -> str:
    """A hash exactly as rthub wrote it before `sha256$` (scrypt, N=2^14, r=8, p=1)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt$16384$8$1${b64(salt).decode()}${b64(digest).decode()}"


def test_new_clients_get_fast_hashes_that_the_token_endpoint_checks(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    stored = redis.Redis.from_url(auth_server.settings.redis_url, decode_responses=True)
    encoded = stored.hget(rkeys.client_key(auth_server.settings, client_id), "secret_hash")
    assert encoded.startswith("sha256$")
    assert auth_server.token(client_id, secret)
    wrong = auth_server.http.post("/oauth/token", data=GRANT, auth=(client_id, secret[:-1] + "x"))
    assert wrong.status_code == 401


def test_legacy_scrypt_hashes_work_and_are_upgraded_on_first_use(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create()
    stored = redis.Redis.from_url(auth_server.settings.redis_url, decode_responses=True)
    key = rkeys.client_key(auth_server.settings, client_id)
    stored.hset(key, "secret_hash", scrypt_hash(secret))
    wrong = auth_server.http.post("/oauth/token", data=GRANT, auth=(client_id, "not-the-secret"))
    assert wrong.status_code == 401
    assert stored.hget(key, "secret_hash").startswith("scrypt$"), "a wrong secret upgrades nothing"
    assert auth_server.token(client_id, secret)
    upgraded = stored.hget(key, "secret_hash")
    assert upgraded.startswith("sha256$") and verify_secret(secret, upgraded)
    assert auth_server.token(client_id, secret), "and the upgraded hash keeps working"


def test_a_legacy_previous_secret_in_grace_is_upgraded_in_place(auth_server: AuthServer) -> None:
    client_id, old_secret = auth_server.create()
    stored = redis.Redis.from_url(auth_server.settings.redis_url, decode_responses=True)
    key = rkeys.client_key(auth_server.settings, client_id)
    rotated = {
        "secret_hash": hash_secret(new_secret()),
        "previous_secret_hash": scrypt_hash(old_secret),
        "previous_secret_expires": int(time.time()) + 60,
    }
    stored.hset(key, mapping=rotated)
    assert auth_server.token(client_id, old_secret)
    assert stored.hget(key, "previous_secret_hash").startswith("sha256$")


def test_admin_sign_in_upgrades_a_legacy_hash(auth_server: AuthServer) -> None:
    client_id, secret = auth_server.create(name="admin", type="other", scopes=["admin"])
    stored = redis.Redis.from_url(auth_server.settings.redis_url, decode_responses=True)
    key = rkeys.client_key(auth_server.settings, client_id)
    stored.hset(key, "secret_hash", scrypt_hash(secret))
    page = auth_server.http.get("/admin/")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    form = {"csrf": csrf, "client_id": client_id, "client_secret": secret}
    signed_in = auth_server.http.post("/admin/login", data=form)
    assert signed_in.status_code == 303
    assert stored.hget(key, "secret_hash").startswith("sha256$")
