"""The ES256 signing keys: this process's private key (a PEM file, `RTHUB_DATA_DIR/signing-key.pem`) and
the public keys the registry publishes (`auth.keyring`), which every hub serves in its JWKS and verifies
tokens with, whichever hub signed them.

`rotate_signing_key` writes a new private key into the data directory and publishes its public key in
the registry as the current one; the previous public keys stay published (the last `KEEP_RETIRED`), so
tokens signed before keep verifying until they expire. Every hub follows the registry (`follow`, and at
once when a token names a kid it does not know) and signs with the new key as soon as its data
directory holds it; a hub whose directory does not says so loudly and keeps signing with its own key
while that is still published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from joserfc.jwk import ECKey
from redis.exceptions import RedisError

from auth import keyring
from auth.settings import AuthSettings

ALGORITHM = "ES256"
KEEP_RETIRED = 3
KIND = "signing"
FOLLOW_SECONDS = 1.0
# A rotation publishes the new key before it renames the new file into place: a hub looking in between
# finds the old file, and reports the key missing only if that lasts this long.
MISSING_GRACE = 2.0
# A token naming an unknown kid makes the hub read the registry at once, at most this often.
RECHECK_SECONDS = 0.2

log = logging.getLogger("rthub.keys")


class NoSigningKey(Exception):
    """This process holds no private key that the registry still publishes: it cannot issue tokens."""


class SigningKeys:
    """The key this process signs with and the public keys every process verifies with.

    Empty until `start`, which checks the key file against the registry (`keyring.KeyMismatch`).
    """

    def __init__(self, settings: AuthSettings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.path = Path(settings.signing_key_path)
        self.private: ECKey | None = None
        self.published: list[ECKey] = []
        self.current_kid = ""  # the registry's
        self.missing = ""  # why this process does not hold the registry's current key, once it lasts
        self._missing_since: float | None = None
        self._rechecked = 0.0
        self._lock = asyncio.Lock()

    @property
    def kid(self) -> str:
        """The kid of the key this process signs with."""
        return str(self.private.kid) if self.private is not None else ""

    async def start(self) -> None:
        """Load the key file and check it is the registry's current key; on a first start (the registry
        records none) generate one when the file is absent too, and record it."""
        for attempt in range(keyring.WITHDRAWN_RETRIES + 1):
            recorded = await keyring.read(self.redis, self.settings)
            created = False
            if not self.path.exists():
                if recorded.signing_kid:
                    raise keyring.mismatch(self.settings, KIND, str(self.path), "", recorded.signing_kid)
                created = _create_if_absent(self.path)
            try:
                private = load_private_key(self.path)
                break
            except FileNotFoundError:
                # A concurrent first start in this directory made the file, lost the registry's race and
                # withdrew it: look again (the registry now records the winner, so this start refuses too).
                if attempt == keyring.WITHDRAWN_RETRIES:
                    raise
        if not recorded.signing_kid:
            recorded = await keyring.record_signing(self.redis, self.settings, [public_jwk(private)], _kid(private))
        if _kid(private) != recorded.signing_kid:
            if created:
                self.path.unlink(missing_ok=True)
            raise keyring.mismatch(self.settings, KIND, str(self.path), _kid(private), recorded.signing_kid)
        keyring.logged(KIND, str(self.path), "created at" if created else "loaded from", f"kid {_kid(private)}")
        self._apply(recorded, private)

    async def refresh(self) -> None:
        """Take the registry's published keys, and the private key of its current kid from the file."""
        recorded = await keyring.read(self.redis, self.settings)
        if not recorded.signing_kid and self.private is not None:  # the registry lost its record: restore ours
            recorded = await keyring.record_signing(self.redis, self.settings, [public_jwk(self.private)], self.kid)
        private = self.private
        if recorded.signing_kid != self.kid:
            on_disk = _try_load(self.path)
            if on_disk is not None and _kid(on_disk) == recorded.signing_kid:
                private = on_disk
                keyring.logged(KIND, str(self.path), "loaded from", f"kid {_kid(on_disk)}, now signing with it")
        self._apply(recorded, private)

    async def follow(self) -> None:
        """Refresh every `FOLLOW_SECONDS` until cancelled; a Redis outage only delays it, and anything
        else (a record this version cannot read) is logged and tried again, never ends the following."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.debug("signing keys not refreshed: %s", exc)
            except Exception:
                log.exception("signing keys not refreshed; trying again")

    async def recheck(self) -> None:
        """A token names a kid this process does not know: it may have been rotated a moment ago."""
        async with self._lock:
            if time.monotonic() - self._rechecked < RECHECK_SECONDS:
                return
            self._rechecked = time.monotonic()
            with contextlib.suppress(RedisError, OSError):
                await self.refresh()

    def _apply(self, recorded: keyring.Recorded, private: ECKey | None) -> None:
        self.published = [ECKey.import_key(jwk) for jwk in recorded.signing]
        self.current_kid = recorded.signing_kid
        self.private = private
        if self.kid == self.current_kid:
            if self.missing:
                log.info("signing key: now signing with the current kid %s", self.current_kid)
            self.missing, self._missing_since = "", None
            return
        now = time.monotonic()
        if self._missing_since is None:
            self._missing_since = now
        if not self.missing and now - self._missing_since >= MISSING_GRACE:
            self.missing = (
                f"{keyring.mismatch(self.settings, KIND, str(self.path), self.kid, self.current_kid)}; "
                f"until then this hub signs with kid {self.kid} while it is published, and verifies every published key"
            )
            log.error("signing key rotated elsewhere: %s", self.missing)

    def key_for(self, kid: Any) -> ECKey | None:
        """The published public key named `kid`, if any."""
        return next((key for key in self.published if kid and key.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS every hub serves: the registry's, current key first."""
        return {"keys": [public_jwk(key) for key in self.published]}

    def signing_key(self) -> ECKey:
        """The private key to sign with: the current one, or this process's own while it is still published."""
        if self.private is None or self.key_for(self.kid) is None:
            raise NoSigningKey(self.missing or f"the signing key in {self.path} is no longer published")
        return self.private


async def rotate_signing_key(redis: aioredis.Redis, settings: AuthSettings) -> str:
    """Generate a new current key: written into the data directory, published in the registry (the old
    public keys stay published); returns its kid. Refuses (`keyring.KeyMismatch`) where the key file
    is not the registry's current key, since the hubs could not sign with a key made elsewhere."""
    keys = SigningKeys(settings, redis)
    await keys.start()
    fresh = _import_private(ECKey.generate_key("P-256", private=True).as_pem(private=True))
    published = [public_jwk(fresh), *keys.jwks()["keys"]][: 1 + KEEP_RETIRED]
    tmp = _temp_file(keys.path, fresh.as_pem(private=True))
    try:
        if not await keyring.publish_signing(redis, settings, published, _kid(fresh), replacing=keys.kid):
            raise keyring.KeyMismatch("another signing key rotation finished first; nothing changed here, run it again")
        os.replace(tmp, keys.path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    keyring.logged(KIND, str(keys.path), "created at", f"kid {_kid(fresh)}, published as current")
    return _kid(fresh)


def load_private_key(path: str | os.PathLike[str]) -> ECKey:
    """The private key in a PEM file, named by its thumbprint (its `kid`)."""
    return _import_private(Path(path).read_bytes())


def public_jwk(key: ECKey) -> dict[str, Any]:
    data = dict(key.as_dict(private=False))
    data.update({"kid": key.kid or key.thumbprint(), "alg": ALGORITHM, "use": "sig"})
    return data


def _kid(key: ECKey) -> str:
    return str(key.kid)


def _try_load(path: Path) -> ECKey | None:
    try:
        return load_private_key(path)
    except (OSError, ValueError):
        return None


def _import_private(pem: bytes) -> ECKey:
    key = ECKey.import_key(pem)
    return ECKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint(), "alg": ALGORITHM, "use": "sig"})


def _create_if_absent(path: Path) -> bool:
    """First start: generate a key unless another process just did (`os.link`); True when this one won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path, ECKey.generate_key("P-256", private=True).as_pem(private=True))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _temp_file(path: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    return tmp
