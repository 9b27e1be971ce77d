"""Are this machine's key files the ones the registry records? Read only: the doctor never makes a key.

The same comparison a hub makes at start (`auth.endpoint_credentials.checked_cipher`,
`auth.keys.SigningKeys.start`), without their first-start generation: a key file the registry does not
record, or a record with no key file here, means credentials written or tokens signed here would not
be readable by the hubs (or the reverse).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from auth import keyring
from auth.endpoint_credentials import CredentialError, EndpointCipher
from auth.keys import load_private_key
from hub.config import Settings
from hub.doctor.findings import Finding, Severity


async def check_keys(redis: aioredis.Redis, settings: Settings) -> list[Finding]:
    recorded = await keyring.read(redis, settings)
    return [_endpoint(settings, recorded), _signing(settings, recorded)]


def _endpoint(settings: Settings, recorded: keyring.Recorded) -> Finding:
    path = settings.endpoint_key_path
    subject = f"endpoint key {path}"
    try:
        local = EndpointCipher(path).fingerprint
    except CredentialError:
        local = ""
    except ValueError as exc:  # not a Fernet key at all
        return Finding(subject, Severity.FAIL, f"unreadable: {exc}", "restore the deployment's key file there")
    return _compare(settings, subject, "endpoint", path, local, recorded.endpoint)


def _signing(settings: Settings, recorded: keyring.Recorded) -> Finding:
    path = settings.signing_key_path
    subject = f"signing key {path}"
    try:
        local = str(load_private_key(path).kid)
    except FileNotFoundError:
        local = ""
    except ValueError as exc:
        return Finding(subject, Severity.FAIL, f"unreadable: {exc}", "restore the deployment's key file there")
    return _compare(settings, subject, "signing", path, local, recorded.signing_kid)


def _compare(settings: Settings, subject: str, kind: str, path: str, local: str, recorded: str) -> Finding:
    if not recorded:
        note = "no key recorded yet: the first hub to start makes and records one"
        if local:
            note += f"; this file ({local}) is recorded if a hub using it starts first"
        return Finding(subject, Severity.WARN if local else Severity.OK, note,
                       "start the first hub where the deployment's data directory is")
    if local == recorded:
        return Finding(subject, Severity.OK, f"the registry's key ({local})")
    refusal = keyring.mismatch(settings, kind, path, local, recorded)
    return Finding(subject, Severity.FAIL, str(refusal),
                   "run every hub and rthub command with the deployment's RTHUB_DATA_DIR (or the key file setting)")
