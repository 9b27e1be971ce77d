"""Encryption at rest for the credentials the hub must *send* to an LRS or Caliper endpoint.

A client secret is hashed because the hub only checks it; an endpoint password or token is sent on
every request, so it is stored Fernet-encrypted (AES-128-CBC + HMAC-SHA256) under a key file that,
like the signing key, is generated on first use and shared by every process of a deployment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class CredentialError(ValueError):
    """A stored endpoint credential cannot be decrypted with this key file."""


class EndpointCipher:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        _create_if_absent(self.path)
        self._fernet = Fernet(self.path.read_bytes().strip())

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The clear credential; the message names the key file, never the value."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError) as exc:
            raise CredentialError(f"endpoint credential does not decrypt with the key in {self.path}") from exc


@lru_cache(maxsize=8)
def cipher(path: str) -> EndpointCipher:
    """One cipher per key file and process (the key is read once)."""
    return EndpointCipher(path)


def _create_if_absent(path: Path) -> None:
    """First use: write a fresh key (mode 0600); `os.link` makes concurrent starters agree on one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    os.chmod(tmp, 0o600)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
