"""SSRF guard at delivery: a webhook URL may only reach public addresses, unless the admin allows private ones.

Which addresses may be reached is judged by `auth.addresses`, the same judgement client creation and
update apply, so a URL accepted there is not refused here for its address (nor the other way round),
however its host is spelt. The request is then sent to the address that was checked, with the
original `Host` header and TLS server name, so DNS cannot answer differently between the check and
the connection (rebinding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from auth.addresses import ForbiddenAddress, PrivateAccess, Unreachable, numeric_address, reachable

# Only the status and headers of a receiver's answer matter; more than this of its body is not read.
MAX_RESPONSE_BYTES = 64 * 1024


class UnsafeURL(ValueError):
    """A webhook URL is malformed, or resolves to an address webhooks may not reach."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send: `url` names the checked IP; `host` and `sni` keep the original name."""

    url: str
    host: str
    sni: str | None

    def request_options(self, headers: dict[str, str]) -> dict[str, Any]:
        """httpx keyword arguments that send `headers` to the checked address as to the named host: the
        original `Host` header and, over TLS, the original server name."""
        return {"headers": {**headers, "host": self.host},
                "extensions": {"sni_hostname": self.sni} if self.sni else None}


async def resolve(url: str, private: PrivateAccess) -> Target:
    """Check `url` and pin it to one resolved address; raise `UnsafeURL` when it may not be reached."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeURL(f"webhook URL must be http or https, got {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise UnsafeURL("webhook URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("webhook URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"webhook URL has a bad port: {exc}") from exc
    try:
        addresses = await reachable(host, port, private)
    except (Unreachable, ForbiddenAddress) as exc:
        raise UnsafeURL(str(exc)) from exc
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    named = parts.scheme == "https" and numeric_address(host) is None
    return Target(pinned, host_header, host if named else None)


async def read_at_most(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """Up to `limit` bytes of a receiver's (decoded) body, enough to reuse the connection after a normal
    answer and to quote an error; a longer or endless body is cut off, closing the connection."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])
