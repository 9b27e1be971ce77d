"""The ES256 signing key: a PEM file (generated on first start when absent) plus the public keys it
replaced, so tokens signed before a rotation keep verifying until they expire.

Retired public keys live next to the key file in `<file>.retired.json` (a JWKS). Every process that
shares the key file notices a rotation within a second by watching both files' mtimes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

ALGORITHM = "ES256"
KEEP_RETIRED = 3
_RECHECK_SECONDS = 1.0


class SigningKeys:
    """The current private key and every public key a verifier should still accept."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.retired_path = self.path.with_name(self.path.name + ".retired.json")
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.current: ECKey
        self.retired: list[ECKey] = []
        _create_if_absent(self.path)
        self._load()

    def _file_stamp(self) -> tuple[int, int]:
        retired = self.retired_path.stat().st_mtime_ns if self.retired_path.exists() else 0
        return self.path.stat().st_mtime_ns, retired

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self.current = _import_private(self.path.read_bytes())
        self.retired = []
        if self.retired_path.exists():
            data = json.loads(self.retired_path.read_text())
            self.retired = [ECKey.import_key(item) for item in data.get("keys", [])]

    def refresh(self) -> None:
        """Reload when another process rotated the key (checked at most once a second)."""
        if time.monotonic() - self._checked < _RECHECK_SECONDS:
            return
        self._checked = time.monotonic()
        if self._file_stamp() != self._stamp:
            self._load()

    @property
    def kid(self) -> str:
        return str(self.current.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: current key first, then the retired ones."""
        self.refresh()
        keys = [self.current, *[key for key in self.retired if key.kid != self.current.kid]]
        return {"keys": [_public_jwk(key) for key in keys]}

    def verification_keys(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]

    def session_secret(self, purpose: str) -> str:
        """A secret derived from the private key, identical in every process sharing the key file."""
        material = self.current.as_pem(private=True)
        return hmac.new(material, purpose.encode(), hashlib.sha256).hexdigest()


def rotate_signing_key(path: str | os.PathLike[str]) -> str:
    """Generate a new current key; the old public key joins the retired set. Returns the new kid."""
    keys = SigningKeys(path)
    retired = [keys.current, *keys.retired][:KEEP_RETIRED]
    _write_atomic(keys.retired_path, json.dumps({"keys": [_public_jwk(key) for key in retired]}).encode())
    fresh = ECKey.generate_key("P-256", private=True)
    _write_atomic(keys.path, fresh.as_pem(private=True))
    return _import_private(fresh.as_pem(private=True)).kid or ""


def _import_private(pem: bytes) -> ECKey:
    key = ECKey.import_key(pem)
    return ECKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint(), "alg": ALGORITHM, "use": "sig"})


def _public_jwk(key: ECKey) -> dict[str, Any]:
    data = dict(key.as_dict(private=False))
    data.update({"kid": key.kid or key.thumbprint(), "alg": ALGORITHM, "use": "sig"})
    return data


def _create_if_absent(path: Path) -> None:
    """First start: generate a key; `os.link` makes concurrent starters agree on one winner."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path, ECKey.generate_key("P-256", private=True).as_pem(private=True))
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _write_atomic(path: Path, data: bytes) -> None:
    os.replace(_temp_file(path, data), path)


def _temp_file(path: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    return tmp
