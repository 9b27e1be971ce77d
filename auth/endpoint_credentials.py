"""Encryption at rest for the credentials the hub must *send* to an LRS or Caliper endpoint.

A client secret is hashed because the hub only checks it; an endpoint password or token, and the extra
endpoint headers an operator gives (an API gateway's key, a tenant header), are sent on every request,
so they are stored Fernet-encrypted (AES-128-CBC + HMAC-SHA256) under one key file that every process
of a deployment shares (`RTHUB_DATA_DIR`). The registry records the key's fingerprint (`auth.keyring`):
a process holding another key refuses to write credentials, instead of encrypting them with a key the
hub cannot decrypt with.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import redis.asyncio as aioredis
from cryptography.fernet import Fernet, InvalidToken

from auth import keyring
from auth.settings import AuthSettings

KIND = "endpoint"


class CredentialError(ValueError):
    """A stored endpoint credential cannot be decrypted with this key file."""


class EndpointCipher:
    """The key in one file; it never creates one (`checked_cipher` does, when the registry records none)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._key = self.path.read_bytes().strip()
        except FileNotFoundError as exc:
            raise CredentialError(f"no endpoint key at {self.path}") from exc
        self._fernet = Fernet(self._key)
        self.fingerprint = keyring.fingerprint(self._key)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The clear credential; the message names the key file, never the value."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError) as exc:
            raise CredentialError(f"endpoint credential does not decrypt with the key in {self.path}") from exc

    def seal_headers(self, headers: list[list[str]]) -> str:
        """Extra endpoint headers ([name, value] pairs), encrypted as one value; "" for none."""
        return self.encrypt(json.dumps(headers)) if headers else ""

    def open_headers(self, sealed: str) -> list[tuple[str, str]]:
        """What `seal_headers` sealed; raises `CredentialError` as `decrypt` does."""
        if not sealed:
            return []
        try:
            return [(str(name), str(value)) for name, value in json.loads(self.decrypt(sealed))]
        except (ValueError, TypeError) as exc:
            raise CredentialError(f"endpoint headers do not decrypt to headers with the key in {self.path}") from exc

    def derive(self, purpose: str) -> str:
        """A secret for `purpose` derived from this key: the same in every process sharing it, and never
        rotated (the admin page's session cookies are signed with one)."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=8)
def cipher(path: str) -> EndpointCipher:
    """One cipher per key file and process (the key is read once), for decrypting what is stored."""
    loaded = EndpointCipher(path)
    keyring.logged(KIND, str(loaded.path), "loaded from", f"fingerprint {loaded.fingerprint}")
    return loaded


async def checked_cipher(redis: aioredis.Redis, settings: AuthSettings) -> EndpointCipher:
    """The endpoint key, once the registry says it is the deployment's; raises `keyring.KeyMismatch`.

    A key is generated only when neither the key file nor the registry has one. Concurrent first starts
    agree on one: locally through `os.link`, across machines through the registry, whose loser removes
    the key it just made and refuses.
    """
    path = Path(settings.endpoint_key_path)
    for attempt in range(keyring.WITHDRAWN_RETRIES + 1):
        recorded = (await keyring.read(redis, settings)).endpoint
        created = False
        if not path.exists():
            if recorded:
                raise keyring.mismatch(settings, KIND, str(path), "", recorded)
            created = _create_if_absent(path)
        try:
            local = EndpointCipher(path)
            break
        except CredentialError:
            # Gone since: made by a concurrent first start in this directory that lost the registry's race
            # and withdrew it. Look again (the registry now records the winner, so this start refuses too).
            if path.exists() or attempt == keyring.WITHDRAWN_RETRIES:
                raise
    if not recorded:
        recorded = await keyring.record_endpoint(redis, settings, local.fingerprint)
    if local.fingerprint != recorded:
        if created:
            path.unlink(missing_ok=True)
        raise keyring.mismatch(settings, KIND, str(path), local.fingerprint, recorded)
    keyring.logged(KIND, str(path), "created at" if created else "loaded from", f"fingerprint {local.fingerprint}")
    return local


def _create_if_absent(path: Path) -> bool:
    """Write a fresh key (mode 0600) unless another process just did; True when this one won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
