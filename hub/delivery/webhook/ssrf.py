"""SSRF guard: a webhook URL may only reach public addresses, unless the admin allows private ones.

The host is resolved asynchronously and every address it resolves to must be global unicast
(not loopback, private, link-local, shared/CGNAT, multicast, reserved or a cloud metadata address).
IPv6 forms that carry an IPv4 address a gateway may route to (IPv4-mapped, IPv4-compatible, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address: Python's `is_global` calls them
global whatever they embed. The local-use NAT64 prefix `64:ff9b:1::/48` is refused outright.
The request is then sent to the address that was checked, with the original `Host` header and TLS
server name, so DNS cannot answer differently between the check and the connection (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
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


def is_forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for anything but a global unicast address; an IPv6 address embedding IPv4 is judged by it."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL:
            return True
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return _not_public(embedded) or (address.sixtofour is not None and _not_public(address))
    return _not_public(address)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for on the way out (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or address in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address in METADATA_ADDRESSES or not address.is_global or address.is_multicast


async def resolve(url: str, allow_private: bool) -> Target:
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
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeURL(f"{host} resolves to no address")
    if not allow_private:
        refused = [str(a) for a in addresses if is_forbidden(a)]
        if refused:
            raise UnsafeURL(
                f"{host} resolves to non-public address {refused[0]}; set RTHUB_WEBHOOK_ALLOW_PRIVATE=true to allow"
            )
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    named = parts.scheme == "https" and not _is_literal(host)
    return Target(pinned, host_header, host if named else None)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def read_at_most(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """Up to `limit` bytes of a receiver's (decoded) body, enough to reuse the connection after a normal
    answer and to quote an error; a longer or endless body is cut off, closing the connection."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])
