"""Client secrets: generated with `secrets`, stored only as a salted scrypt hash, checked in constant time.

scrypt is deliberately slow (tens of milliseconds), so callers on an event loop run `verify_secret`
in a worker thread; `hashlib.scrypt` releases the GIL while it works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def new_secret() -> str:
    """A fresh client secret: 256 random bits, URL-safe so it survives forms and shells."""
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret (`whsec_` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_secret(secret: str) -> str:
    """Encode as `scrypt$n$r$p$salt$hash` so parameters can be raised later without breaking old hashes."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, encoded: str) -> bool:
    """True when `secret` matches `encoded`; a malformed or empty hash never matches."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
