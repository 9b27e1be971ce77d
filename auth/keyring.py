"""The key material the registry records (`{prefix}{registry}:keys`), so no process of a deployment runs
with keys that differ from the others'.

Private keys stay in files under `RTHUB_DATA_DIR`; the registry holds what any process can compare its
files with: the endpoint key's fingerprint, the public signing keys and the current signing key's id.
A value is recorded only when none is (the first process to start wins, atomically), and a process
whose key file does not match refuses to start or to write credentials with `KeyMismatch`, naming both
keys and the setting to fix. `auth.endpoint_credentials` and `auth.keys` hold the files; this module is
the only reader and writer of the hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from auth.settings import AuthSettings
from rthub_lms.keys import key_material

log = logging.getLogger("rthub.keys")

ENDPOINT, SIGNING, SIGNING_KID = "endpoint", "signing", "signing_kid"

# First start: record the signing keys unless some process already did; either way answer what is recorded.
_RECORD_SIGNING = """
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
end
return redis.call('HMGET', KEYS[1], ARGV[1], ARGV[3])
"""

# Rotation: publish the new keys only if the current kid is still the one the rotation started from.
_PUBLISH_SIGNING = """
if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""


class KeyMismatch(Exception):
    """This process's key file is not the key the registry records; the message says what to change."""


@dataclass(frozen=True)
class Recorded:
    """What the registry records: endpoint key fingerprint, public signing JWKs (current first), current kid."""

    endpoint: str = ""
    signing: tuple[dict[str, Any], ...] = field(default=())
    signing_kid: str = ""


# How often a first start looks again for a key file that a concurrent first start in the same directory
# made and then withdrew (it lost the registry's race): once suffices, as the registry records the winner.
WITHDRAWN_RETRIES = 2


def fingerprint(material: bytes) -> str:
    """How a key is named in messages and in the registry: 16 hex digits of its SHA-256, never the key."""
    return hashlib.sha256(material.strip()).hexdigest()[:16]


async def read(redis: aioredis.Redis, settings: AuthSettings) -> Recorded:
    data = {_text(k): _text(v) for k, v in (await redis.hgetall(key_material(settings))).items()}
    return Recorded(data.get(ENDPOINT, ""), _jwks(data.get(SIGNING)), data.get(SIGNING_KID, ""))


async def raw_record(redis: aioredis.Redis, settings: AuthSettings) -> dict[str, str]:
    """The record as stored, field by field (what a registry backup carries verbatim)."""
    return {_text(k): _text(v) for k, v in (await redis.hgetall(key_material(settings))).items()}


async def restore_record(redis: aioredis.Redis, settings: AuthSettings, record: dict[str, str]) -> None:
    """Put back a record from a backup, into a registry that records no keys yet."""
    await redis.hset(key_material(settings), mapping=record)


async def record_endpoint(redis: aioredis.Redis, settings: AuthSettings, fingerprint: str) -> str:
    """Record the endpoint key's fingerprint unless one is; returns the one recorded."""
    name = key_material(settings)
    await redis.hsetnx(name, ENDPOINT, fingerprint)
    return _text(await redis.hget(name, ENDPOINT) or b"")


async def record_signing(
    redis: aioredis.Redis, settings: AuthSettings, jwks: list[dict[str, Any]], kid: str
) -> Recorded:
    """Record the public signing keys and current kid unless a kid is; returns what is recorded."""
    signing, recorded_kid = await redis.eval(
        _RECORD_SIGNING, 1, key_material(settings), SIGNING, json.dumps({"keys": jwks}), SIGNING_KID, kid
    )
    return Recorded(signing=_jwks(_text(signing or b"")), signing_kid=_text(recorded_kid or b""))


async def publish_signing(
    redis: aioredis.Redis, settings: AuthSettings, jwks: list[dict[str, Any]], kid: str, replacing: str
) -> bool:
    """Make `kid` current (with `jwks`, current first) if `replacing` still is; False when another won."""
    done = await redis.eval(
        _PUBLISH_SIGNING, 1, key_material(settings), SIGNING, json.dumps({"keys": jwks}), SIGNING_KID, kid, replacing
    )
    return bool(done)


def mismatch(settings: AuthSettings, kind: str, path: str, local: str, recorded: str) -> KeyMismatch:
    """The refusal for a key file that is absent (`local` empty) or not the registry's key."""
    what = "fingerprint" if kind == "endpoint" else "kid"
    found = f"the {kind} key in {path} ({what} {local})" if local else f"there is no {kind} key file at {path}"
    return KeyMismatch(
        f"{found}, but the registry ({key_material(settings)}) records the {kind} key with {what} {recorded}: "
        f"{_fix(settings, kind)} (every rthub process of a deployment must use the same key files)"
    )


def logged(kind: str, path: str, action: str, name: str) -> None:
    """One line per key file created or loaded, with its absolute path."""
    log.info("%s key %s %s (%s)", kind, action, path, name, extra={"key_file": path})


def _fix(settings: AuthSettings, kind: str) -> str:
    override = settings.endpoint_key_file if kind == "endpoint" else settings.signing_key_file
    setting = f"RTHUB_{kind.upper()}_KEY_FILE"
    if override:
        return f"point {setting} (now {override}) at the file holding the registry's key"
    return (f"set RTHUB_DATA_DIR (now {settings.data_dir}) to the directory holding the registry's keys, "
            f"shared by every rthub process, or {setting} to the key file")


def _jwks(text: str | None) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(text)["keys"]) if text else ()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
