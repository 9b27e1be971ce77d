"""Client secrets: generated with `secrets`, stored only as a hash with a scheme prefix, checked in constant time.

Secrets are 256 random bits made by the server, never chosen by people, so nothing can be guessed
from a fast hash: a slow password KDF (scrypt) would add no security and would make every token
request, and every brute-force attempt, cost the hub a core for tens of milliseconds. New hashes are
`sha256$<digest>`; `scrypt$...` hashes written by earlier versions still verify, and the registry
rewrites them as `sha256$` on the first successful check (`needs_upgrade`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "sha256"
LEGACY_SCHEME = "scrypt"


def new_secret() -> str:
    """A fresh client secret: 256 random bits, URL-safe so it survives forms and shells."""
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret (`whsec_` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_secret(secret: str) -> str:
    """`sha256$<urlsafe base64 digest>`: fast, and enough for a 256-bit random secret."""
    return f"{SCHEME}${_b64(hashlib.sha256(secret.encode()).digest())}"


def verify_secret(secret: str, encoded: str) -> bool:
    """True when `secret` matches `encoded` (either scheme); a malformed or empty hash never matches."""
    scheme, _, rest = encoded.partition("$")
    try:
        if scheme == SCHEME:
            expected = base64.urlsafe_b64decode(rest)
            actual = hashlib.sha256(secret.encode()).digest()
        elif scheme == LEGACY_SCHEME:
            n, r, p, salt, digest = rest.split("$")
            expected = base64.urlsafe_b64decode(digest)
            actual = hashlib.scrypt(
                secret.encode(),
                salt=base64.urlsafe_b64decode(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                dklen=len(expected),
            )
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def needs_upgrade(encoded: str) -> bool:
    """True for a hash in an older scheme, to be replaced once the secret has been seen in clear."""
    return encoded.startswith(LEGACY_SCHEME + "$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()
