"""What an OAuth client of rthub is, and which values its fields may take.

Validation lives here, apart from storage, so the CLI, the admin API and the admin page refuse bad
input with the same messages and name the same field. A URL's form is checked by `validate_fields`;
the addresses it reaches by `check_url_addresses`, with the judgement delivery applies
(`auth.addresses`), resolving names off the event loop. `grant_warnings` advises on a grant that
validates but probably misses events; it never refuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Required, TypedDict, get_args
from urllib.parse import urlsplit

from auth.addresses import ForbiddenAddress, PrivateAccess, Unreachable, reachable
from rthub_lms import catalogue
from rthub_lms.grants import RULE_KEYS, GrantError, validate_grant

log = logging.getLogger("rthub.auth")

ConsumerType = Literal["adaptive", "enterprise", "university", "other"]
Translator = Literal["xapi", "caliper"]
Delivery = Literal["websocket", "webhook", "websocket+webhook", "lrs", "caliper-endpoint"]
Actor = Literal["anonymous", "lms-external-id"]
Scope = Literal["events:read", "admin"]
Status = Literal["active", "revoked"]
WebhookStatus = Literal["", "disabled", "paused"]
CONSUMER_TYPES: tuple[str, ...] = get_args(ConsumerType)
TRANSLATORS: tuple[str, ...] = get_args(Translator)
DELIVERIES: tuple[str, ...] = get_args(Delivery)
ACTORS: tuple[str, ...] = get_args(Actor)
EXTERNAL_ACTOR = "lms-external-id"
EXTERNAL_SPACE = "lms-external-id:"  # + the ExternalIdType name: the actor space of such clients
ENDPOINT_DELIVERIES = {"lrs": "xapi", "caliper-endpoint": "caliper"}
SCOPES: tuple[str, ...] = get_args(Scope)
STATUSES: tuple[str, ...] = get_args(Status)
GRANT_RULE_KEYS = RULE_KEYS
MAX_NAME = 200
MAX_TEXT = 4096
MAX_BATCH = 1000
MAX_LINGER = 60.0
MAX_HEADERS = 20
# Headers rthub sets itself on an endpoint POST (or that frame the request), refused as endpoint headers.
RESERVED_HEADERS = frozenset({
    "authorization", "content-type", "content-length", "host", "x-experience-api-version",
    "connection", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer",
})
RESERVED_HEADER_PREFIXES = ("webhook-",)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")

# One grant rule: each key a list of values or glob patterns (`rthub_lms.grants` is the judge).
GrantRule = TypedDict("GrantRule", {key: list[str] for key in RULE_KEYS}, total=False)  # type: ignore[misc]
Url = Annotated[str, {"description": "an absolute http:// or https:// URL without credentials; empty for none"}]
Credential = Annotated[
    str, {"maxLength": MAX_TEXT, "writeOnly": True, "description": "stored encrypted, never returned"}
]
EndpointHeaders = Annotated[
    dict[str, str] | list[str],
    {"writeOnly": True, "description": "extra headers on every POST to the LRS / Caliper endpoint: an object of "
     "name -> value, or a list of \"Name: value\" strings; replaces the set given before ({} clears it). Stored "
     "encrypted, never returned (`endpoint_header_names` shows the names). Refused: headers rthub sets itself "
     "(Authorization, Content-Type, Content-Length, Host, X-Experience-API-Version, webhook-*)"},
]


class ClientFields(TypedDict, total=False):
    """A client's editable fields, as `validate_fields` takes them: any other key is refused."""

    name: Annotated[str, {"minLength": 1, "maxLength": MAX_NAME}]
    type: ConsumerType
    scopes: Annotated[list[Scope] | str, {"description": "a list of scopes, or one space-separated string"}]
    translator: Translator
    actor: Annotated[
        Actor,
        {"description": "who the statements' actor is: `anonymous` (default), rthub's UUID per learner and consumer "
         "type; `lms-external-id`, the LMS's own ExternalId of the translator's type (xapi, caliper), as "
         "event-routing-backends sends it, mirrored by the LMS plug-in (docs/contract.md, \"Actors\")"},
    ]
    delivery: Delivery
    webhook_url: Url
    grant: Annotated[
        list[GrantRule] | GrantRule | str, {"description": "a list of rules, one rule, or either as JSON text"}
    ]
    endpoint_url: Annotated[Url, {"description": "the LRS xAPI endpoint or the Caliper endpoint"}]
    endpoint_username: Annotated[str, {"maxLength": MAX_TEXT, "description": "HTTP Basic user for the LRS"}]
    endpoint_password: Credential
    endpoint_token: Credential
    endpoint_headers: EndpointHeaders
    webhook_batch_max: Annotated[int, {"minimum": 1, "maximum": MAX_BATCH}]
    webhook_batch_wait: Annotated[float, {"minimum": 0, "maximum": MAX_LINGER, "description": "seconds"}]


class NewClient(ClientFields, total=False):
    """A client to issue: `name`, `type` and `translator` are required."""

    name: Required[Annotated[str, {"minLength": 1, "maxLength": MAX_NAME}]]
    type: Required[ConsumerType]
    translator: Required[Translator]


class EndpointCredential(TypedDict, total=False):
    """A new LRS / Caliper endpoint credential: a password (with an optional user) or a token."""

    endpoint_username: Annotated[str, {"maxLength": MAX_TEXT, "description": "HTTP Basic user for the LRS"}]
    endpoint_password: Credential
    endpoint_token: Credential


class PublicClient(TypedDict):
    """A client as admins see it: everything except secret hashes and endpoint credentials."""

    client_id: str
    name: str
    type: ConsumerType
    scopes: list[Scope]
    translator: Translator
    actor: Actor
    delivery: Delivery
    webhook_url: str
    webhook_secret: Annotated[str, {"description": "Standard Webhooks secret, whsec_<base64>"}]
    status: Status
    grant: list[GrantRule]
    previous_secret_expires: Annotated[
        int | None, {"description": "unix seconds when the previous secret stops working; null: none"}
    ]
    webhook_status: Annotated[WebhookStatus, {"description": "disabled: 410 Gone or the breaker; paused: 401/403"}]
    webhook_disabled_reason: str
    created_at: Annotated[str, {"format": "date-time"}]
    updated_at: Annotated[str, {"format": "date-time"}]
    endpoint_url: str
    endpoint_auth: Literal["", "basic", "bearer"]
    endpoint_username: str
    endpoint_credential_set: bool
    endpoint_header_names: Annotated[list[str], {"description": "names of the extra endpoint headers (values are "
                                                                "never returned)"}]
    webhook_batch_max: int
    webhook_batch_wait: float
    delivery_status: Literal["ok", "disabled", "paused"]
    delivery_status_reason: str


EDITABLE: tuple[str, ...] = tuple(ClientFields.__annotations__)
CREDENTIAL_FIELDS = ("endpoint_password", "endpoint_token")
SEALED_FIELDS = (*CREDENTIAL_FIELDS, "endpoint_headers")  # stored encrypted: never validated as clear input
URL_FIELDS = ("webhook_url", "endpoint_url")
RESOLVE_TIMEOUT = 5.0
RECORD_REQUIRED = ("name", "type", "translator", "scopes", "status", "secret_hash")
HASH_SCHEMES = ("sha256$", "scrypt$")
ENCRYPTED_PREFIX = "gAAAAA"  # every Fernet token: version byte 0x80, then the timestamp's leading zeros
CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


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
    actor: str = "anonymous"
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
    endpoint_headers: str = ""  # encrypted JSON list of [name, value] (auth.endpoint_credentials.seal_headers)
    endpoint_header_names: list[str] = field(default_factory=list)
    routed_from: str = ""

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def external_id_type(self) -> str | None:
        """The LMS ExternalIdType its actors are (its translator's standard), or None for anonymised ids."""
        return self.translator if self.actor == EXTERNAL_ACTOR else None

    @property
    def actor_space(self) -> str:
        """Whose ids its statements' actors are: a key of the render group (`actor_space`)."""
        return actor_space(self.type, self.translator, self.actor)

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields (everything a string; the layout other components read)."""
        return {
            "name": self.name,
            "type": self.type,
            "scopes": " ".join(self.scopes),
            "translator": self.translator,
            "actor": self.actor,
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
            "endpoint_headers": self.endpoint_headers,
            "endpoint_header_names": " ".join(self.endpoint_header_names),
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
            actor=data.get("actor") or "anonymous",
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
            endpoint_headers=data.get("endpoint_headers", ""),
            endpoint_header_names=data.get("endpoint_header_names", "").split(),
            routed_from=data.get("routed_from", ""),
        )

    def public(self) -> PublicClient:
        """What admins may see: everything except secret hashes and endpoint credentials."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": self.type,
            "scopes": list(self.scopes),
            "translator": self.translator,
            "actor": self.actor,  # type: ignore[typeddict-item]
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
            "endpoint_header_names": list(self.endpoint_header_names),
            "webhook_batch_max": self.webhook_batch_max,
            "webhook_batch_wait": self.webhook_batch_wait,
            "delivery_status": self.webhook_status or "ok",  # type: ignore[typeddict-item]
            "delivery_status_reason": self.webhook_disabled_reason,
        }


def actor_space(consumer_type: str, translator: str, actor: str) -> str:
    """Whose ids a client's actors are: its consumer type's anonymised ids (the type itself), or the LMS's
    external ids of its translator's type (`lms-external-id:xapi`). Clients of one space and translator
    share every rendered frame."""
    return EXTERNAL_SPACE + translator if actor == EXTERNAL_ACTOR else consumer_type


def external_id_type(space: str) -> str | None:
    """The ExternalIdType an actor space reads (`lms-external-id:xapi` -> `xapi`); None for anonymised ids."""
    return space[len(EXTERNAL_SPACE):] if space.startswith(EXTERNAL_SPACE) else None


def validate_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise editable fields; unknown keys are refused rather than silently dropped."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    clean: dict[str, Any] = {}
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ValidationError("name", f"must be a non-empty string of at most {MAX_NAME} characters")
        clean["name"] = name.strip()
    for key, allowed in (
        ("type", CONSUMER_TYPES), ("translator", TRANSLATORS), ("delivery", DELIVERIES), ("actor", ACTORS)
    ):
        if key in values:
            clean[key] = _choice(key, values[key], allowed)
    if "scopes" in values:
        clean["scopes"] = _scopes(values["scopes"])
    for key in URL_FIELDS:
        if key in values:
            clean[key] = _url(key, values[key])
    for key in ("endpoint_username", *CREDENTIAL_FIELDS):
        if key in values:
            clean[key] = _short_text(key, values[key])
    if "endpoint_headers" in values:
        clean["endpoint_headers"] = endpoint_headers(values["endpoint_headers"])
    if "webhook_batch_max" in values:
        clean["webhook_batch_max"] = _number("webhook_batch_max", values["webhook_batch_max"], int, 1, MAX_BATCH)
    if "webhook_batch_wait" in values:
        clean["webhook_batch_wait"] = _number("webhook_batch_wait", values["webhook_batch_wait"], float, 0, MAX_LINGER)
    if "grant" in values:
        clean["grant"] = _check_grant(values["grant"])
    return clean


def grant_warnings(values: dict[str, Any]) -> list[str]:
    """What the grant among editable fields probably did not mean (`rthub_lms.catalogue`), one sentence
    each: `event_types` that match no event name rthub translates, or an event seen under some of its
    names only. Never a refusal; `[]` when the fields carry no grant. Raises `ValidationError` as input does."""
    if "grant" not in values:
        return []
    return catalogue.grant_warnings(_check_grant(values["grant"]))


def check_record(client_id: Any, data: Any) -> Client:
    """A stored record brought from outside (a registry backup), judged before it may be written back.

    The same rules as input, plus what only a stored record has: secrets as hashes (`sha256$`/`scrypt$`)
    and endpoint credentials encrypted, so a hand-edited record with a clear value is refused.
    """
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ValidationError("client_id", "must be 1-100 letters, digits, '_', '.' or '-'")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValidationError("record", "must be an object of string fields")
    unknown = sorted(set(data) - set(Client(client_id, "", "", "").to_hash()))
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    missing = [key for key in RECORD_REQUIRED if not data.get(key)]
    if missing:
        raise ValidationError(missing[0], "required")
    try:
        client = Client.from_hash(client_id, data)
    except ValueError as exc:  # a number or the grant JSON that does not parse
        raise ValidationError("record", f"unreadable: {exc}") from exc
    # Form only: where a URL may send is judged again before every delivery (`check_url_addresses`).
    validate_fields({key: getattr(client, key) for key in EDITABLE if key not in SEALED_FIELDS})
    _choice("status", client.status, STATUSES)
    for key in ("secret_hash", "previous_secret_hash"):
        value = getattr(client, key)
        if value and not value.startswith(HASH_SCHEMES):
            raise ValidationError(key, "must be a stored hash (sha256$... or scrypt$...), never a clear secret")
    if client.endpoint_credential and not client.endpoint_credential.startswith(ENCRYPTED_PREFIX):
        raise ValidationError("endpoint_credential", "must be the encrypted credential, never a clear one")
    if client.endpoint_headers and not client.endpoint_headers.startswith(ENCRYPTED_PREFIX):
        raise ValidationError("endpoint_headers", "must be the encrypted headers, never clear ones")
    if bool(client.endpoint_headers) != bool(client.endpoint_header_names):
        raise ValidationError("endpoint_header_names", "must name the headers exactly when endpoint_headers is set")
    for name in client.endpoint_header_names:
        _header_name(name)
    check_delivery(client)
    return client


def check_delivery(client: Client) -> None:
    """A client that asks for webhooks must say where they go."""
    if "webhook" in client.delivery and not client.webhook_url:
        raise ValidationError("webhook_url", f"required when delivery is {client.delivery!r}")
    translator = ENDPOINT_DELIVERIES.get(client.delivery)
    if translator is None:
        if client.endpoint_header_names:
            raise ValidationError("endpoint_headers", "only lrs and caliper-endpoint deliveries send endpoint headers; "
                                  "clear them ({}) to change the delivery")
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


async def check_url_addresses(clean: dict[str, Any], private: PrivateAccess) -> None:
    """Refuse a URL field whose host is, or resolves to, an address delivery would refuse to reach.

    A name that does not resolve now (or within `RESOLVE_TIMEOUT`) is accepted with a logged warning:
    its DNS may not exist yet, or differ where the hub runs; delivery judges it again at every send.
    """
    for key in URL_FIELDS:
        url = clean.get(key)
        if not url:
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                await reachable(host, parts.port or (443 if parts.scheme == "https" else 80), private)
        except ForbiddenAddress as exc:
            raise ValidationError(key, str(exc)) from exc
        except (Unreachable, TimeoutError) as exc:
            unresolved = str(exc) or f"cannot resolve {host} within {RESOLVE_TIMEOUT:g} s"
            log.warning("%s %s accepted, but %s; it is checked again at every delivery", key, url, unresolved)


def _url(name: str, value: Any) -> str:
    if value in ("", None):
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValidationError(name, f"malformed URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError(name, "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValidationError(name, "must not carry credentials; give them as endpoint_username/password/token")
    return value


def _short_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or any(ch in value for ch in "\r\n\0"):
        raise ValidationError(name, f"must be a single-line string of at most {MAX_TEXT} characters")
    return value


def endpoint_headers(value: Any) -> list[list[str]]:
    """Endpoint headers from any front end, as [name, value] pairs in the order given: an object, a list of
    "Name: value" strings, or such lines in one string (the admin page). Empty clears them."""
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if isinstance(value, dict):
        pairs = [(name, text) for name, text in value.items()]
    elif isinstance(value, list):
        pairs = [_header_line(line) for line in value]
    else:
        raise ValidationError("endpoint_headers", 'must be an object of name -> value or a list of "Name: value"')
    if len(pairs) > MAX_HEADERS:
        raise ValidationError("endpoint_headers", f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    clean = []
    for name, text in pairs:
        name = _header_name(name)
        if name.lower() in seen:
            raise ValidationError("endpoint_headers", f"{name} given twice")
        seen.add(name.lower())
        if not isinstance(text, str) or len(text) > MAX_TEXT or not HEADER_VALUE.fullmatch(text):
            raise ValidationError("endpoint_headers", f"{name}: the value must be printable ASCII on one line, "
                                  f"at most {MAX_TEXT} characters")
        clean.append([name, text.strip()])
    return clean


def _header_line(line: Any) -> tuple[str, str]:
    if not isinstance(line, str) or ":" not in line:
        raise ValidationError("endpoint_headers", f'each header must read "Name: value"; got {str(line)[:60]!r}')
    name, _, text = line.partition(":")
    return name.strip(), text


def _header_name(name: Any) -> str:
    if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
        raise ValidationError("endpoint_headers", f"{str(name)[:60]!r} is not a header name (letters, digits, "
                              "and !#$%&'*+-.^_`|~, at most 100)")
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
        raise ValidationError("endpoint_headers", f"{name} is set by rthub itself and cannot be given")
    return name


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"must be a number from {low:g} to {high:g}") from exc
    if isinstance(value, bool) or not low <= number <= high:
        raise ValidationError(name, f"must be a number from {low:g} to {high:g}")
    return number


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
