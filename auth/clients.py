"""What an OAuth client of rthub is, and which values its fields may take.

Validation lives here, apart from storage, so the CLI, the admin API and the admin page refuse bad
input with the same messages and name the same field.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rthub_lms.grants import RULE_KEYS, GrantError, validate_grant

CONSUMER_TYPES = ("adaptive", "enterprise", "university", "other")
TRANSLATORS = ("xapi", "caliper")
DELIVERIES = ("websocket", "webhook", "websocket+webhook", "lrs", "caliper-endpoint")
ENDPOINT_DELIVERIES = {"lrs": "xapi", "caliper-endpoint": "caliper"}
SCOPES = ("events:read", "admin")
STATUSES = ("active", "revoked")
GRANT_RULE_KEYS = RULE_KEYS
EDITABLE = (
    "name", "type", "scopes", "translator", "delivery", "webhook_url", "grant", "endpoint_url",
    "endpoint_username", "endpoint_password", "endpoint_token", "webhook_batch_max", "webhook_batch_wait",
)
CREDENTIAL_FIELDS = ("endpoint_password", "endpoint_token")
MAX_BATCH = 1000
MAX_LINGER = 60.0


class ValidationError(ValueError):
    """Input refused; `field` names the offending field so every front end can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Client:
    """One registered consumer, as stored in the `{prefix}{registry}:client:{id}` hash."""

    client_id: str
    name: str
    type: str
    translator: str
    scopes: list[str] = field(default_factory=lambda: ["events:read"])
    delivery: str = "websocket"
    webhook_url: str = ""
    webhook_secret: str = ""
    status: str = "active"
    grant: list[dict[str, Any]] = field(default_factory=list)
    secret_hash: str = ""
    previous_secret_hash: str = ""
    previous_secret_expires: int = 0
    created_at: str = ""
    updated_at: str = ""
    webhook_batch_max: int = 1
    webhook_batch_wait: float = 0.0
    webhook_status: str = ""
    webhook_disabled_reason: str = ""
    endpoint_url: str = ""
    endpoint_auth: str = ""
    endpoint_username: str = ""
    endpoint_credential: str = ""
    routed_from: str = ""

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields (everything a string; the layout other components read)."""
        return {
            "name": self.name,
            "type": self.type,
            "scopes": " ".join(self.scopes),
            "translator": self.translator,
            "delivery": self.delivery,
            "webhook_url": self.webhook_url,
            "webhook_secret": self.webhook_secret,
            "status": self.status,
            "grant": json.dumps(self.grant, separators=(",", ":")),
            "secret_hash": self.secret_hash,
            "previous_secret_hash": self.previous_secret_hash,
            "previous_secret_expires": str(self.previous_secret_expires),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "webhook_batch_max": str(self.webhook_batch_max),
            "webhook_batch_wait": str(self.webhook_batch_wait),
            "webhook_status": self.webhook_status,
            "webhook_disabled_reason": self.webhook_disabled_reason,
            "endpoint_url": self.endpoint_url,
            "endpoint_auth": self.endpoint_auth,
            "endpoint_username": self.endpoint_username,
            "endpoint_credential": self.endpoint_credential,
            "routed_from": self.routed_from,
        }

    @classmethod
    def from_hash(cls, client_id: str, data: dict[str, str]) -> Client:
        """The one reading of a stored record; a missing `status` reads as revoked (fail closed)."""
        return cls(
            client_id=client_id,
            name=data.get("name", ""),
            type=data.get("type", "other"),
            translator=data.get("translator", "xapi"),
            scopes=data.get("scopes", "").split(),
            delivery=data.get("delivery", "websocket"),
            webhook_url=data.get("webhook_url", ""),
            webhook_secret=data.get("webhook_secret", ""),
            status=data.get("status", "revoked"),
            grant=json.loads(data.get("grant") or "[]"),
            secret_hash=data.get("secret_hash", ""),
            previous_secret_hash=data.get("previous_secret_hash", ""),
            previous_secret_expires=int(data.get("previous_secret_expires") or 0),
            created_at=data.get("created_at", ""),
            updated_at=data.get("updated_at", ""),
            webhook_batch_max=int(data.get("webhook_batch_max") or 1),
            webhook_batch_wait=float(data.get("webhook_batch_wait") or 0),
            webhook_status=data.get("webhook_status", ""),
            webhook_disabled_reason=data.get("webhook_disabled_reason", ""),
            endpoint_url=data.get("endpoint_url", ""),
            endpoint_auth=data.get("endpoint_auth", ""),
            endpoint_username=data.get("endpoint_username", ""),
            endpoint_credential=data.get("endpoint_credential", ""),
            routed_from=data.get("routed_from", ""),
        )

    def public(self) -> dict[str, Any]:
        """What admins may see: everything except secret hashes and endpoint credentials."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": self.type,
            "scopes": list(self.scopes),
            "translator": self.translator,
            "delivery": self.delivery,
            "webhook_url": self.webhook_url,
            "webhook_secret": self.webhook_secret,
            "status": self.status,
            "grant": self.grant,
            "previous_secret_expires": self.previous_secret_expires or None,
            "webhook_status": self.webhook_status,
            "webhook_disabled_reason": self.webhook_disabled_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "endpoint_url": self.endpoint_url,
            "endpoint_auth": self.endpoint_auth,
            "endpoint_username": self.endpoint_username,
            "endpoint_credential_set": bool(self.endpoint_credential),
            "webhook_batch_max": self.webhook_batch_max,
            "webhook_batch_wait": self.webhook_batch_wait,
            "delivery_status": self.webhook_status or "ok",
            "delivery_status_reason": self.webhook_disabled_reason,
        }


def validate_fields(values: dict[str, Any], allow_private_webhooks: bool) -> dict[str, Any]:
    """Check and normalise editable fields; unknown keys are refused rather than silently dropped."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    clean: dict[str, Any] = {}
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("name", "must be a non-empty string of at most 200 characters")
        clean["name"] = name.strip()
    for key, allowed in (("type", CONSUMER_TYPES), ("translator", TRANSLATORS), ("delivery", DELIVERIES)):
        if key in values:
            clean[key] = _choice(key, values[key], allowed)
    if "scopes" in values:
        clean["scopes"] = _scopes(values["scopes"])
    if "webhook_url" in values:
        clean["webhook_url"] = _webhook_url(values["webhook_url"], allow_private_webhooks)
    if "endpoint_url" in values:
        clean["endpoint_url"] = _webhook_url(values["endpoint_url"], allow_private_webhooks, "endpoint_url")
    for key in ("endpoint_username", *CREDENTIAL_FIELDS):
        if key in values:
            clean[key] = _short_text(key, values[key])
    if "webhook_batch_max" in values:
        clean["webhook_batch_max"] = _number("webhook_batch_max", values["webhook_batch_max"], int, 1, MAX_BATCH)
    if "webhook_batch_wait" in values:
        clean["webhook_batch_wait"] = _number("webhook_batch_wait", values["webhook_batch_wait"], float, 0, MAX_LINGER)
    if "grant" in values:
        clean["grant"] = _check_grant(values["grant"])
    return clean


def check_delivery(client: Client) -> None:
    """A client that asks for webhooks must say where they go."""
    if "webhook" in client.delivery and not client.webhook_url:
        raise ValidationError("webhook_url", f"required when delivery is {client.delivery!r}")
    translator = ENDPOINT_DELIVERIES.get(client.delivery)
    if translator is None:
        return
    if client.translator != translator:
        raise ValidationError("translator", f"must be {translator!r} when delivery is {client.delivery!r}")
    if not client.endpoint_url:
        raise ValidationError("endpoint_url", f"required when delivery is {client.delivery!r}")
    if not client.endpoint_credential:
        needed = "endpoint_token" if client.delivery == "caliper-endpoint" else "endpoint_password or endpoint_token"
        raise ValidationError(needed.split()[0], f"{needed} required when delivery is {client.delivery!r}")
    if client.delivery == "caliper-endpoint" and client.endpoint_auth != "bearer":
        raise ValidationError("endpoint_token", "a Caliper endpoint takes a bearer token, not a password")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(key, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _scopes(value: Any) -> list[str]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise ValidationError("scopes", "must be a non-empty list of scopes")
    for item in items:
        _choice("scopes", item, SCOPES)
    return list(dict.fromkeys(items))


def _webhook_url(value: Any, allow_private: bool, name: str = "webhook_url") -> str:
    if value in ("", None):
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationError(name, f"malformed URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError(name, "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValidationError(name, "must not carry credentials; give them as endpoint_username/password/token")
    if not allow_private and _is_private_literal(host):
        raise ValidationError(name, "points at a loopback or private address (RTHUB_WEBHOOK_ALLOW_PRIVATE)")
    return value


def _short_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096 or any(ch in value for ch in "\r\n\0"):
        raise ValidationError(name, "must be a single-line string of at most 4096 characters")
    return value


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"must be a number from {low:g} to {high:g}") from exc
    if isinstance(value, bool) or not low <= number <= high:
        raise ValidationError(name, f"must be a number from {low:g} to {high:g}")
    return number


def _is_private_literal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified


def _check_grant(value: Any) -> list[dict[str, Any]]:
    """A grant from any front end: JSON text, one rule object, or a list of rules; `rthub_lms.grants` judges it."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValidationError("grant", f"not valid JSON: {exc.msg}") from exc
    if isinstance(value, dict):
        value = [value]
    try:
        return validate_grant(value)
    except GrantError as exc:
        raise ValidationError(exc.field, exc.message) from exc
