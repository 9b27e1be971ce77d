"""Which addresses a webhook or endpoint URL may reach: the one judgement, at creation, update and delivery.

A host is first read as a connect would read it: an IPv6 literal, or an IPv4 address in any numeric
form the platform resolver takes (`inet_aton`: `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`,
`0`), so no spelling of an address can pass a text check and reach another address. A name is
resolved (off the event loop) and every address it resolves to is judged; `localhost` and names
under it are loopback whatever a resolver says (RFC 6761). An address may be reached only when it is
global unicast: not loopback, private, link-local, shared/CGNAT, multicast, reserved or a cloud
metadata address. IPv6 forms that carry an IPv4 address a gateway may route to (IPv4-mapped,
IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address: Python's
`is_global` calls them global whatever they embed. The local-use NAT64 prefix `64:ff9b:1::/48` is
refused outright.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
LOOPBACK_NAME = ipaddress.IPv4Address("127.0.0.1")
ALLOW_HINT = ("name the host in RTHUB_WEBHOOK_PRIVATE_HOSTS to allow its private addresses "
              "(or RTHUB_WEBHOOK_ALLOW_PRIVATE=true for every host)")


@dataclass(frozen=True, slots=True)
class PrivateAccess:
    """Which hosts may be reached on private addresses: every one (`RTHUB_WEBHOOK_ALLOW_PRIVATE`), or
    only those named (`RTHUB_WEBHOOK_PRIVATE_HOSTS`, e.g. a deployment's own LRS on its private network).
    A named host may resolve to loopback or private addresses, never to a cloud metadata address."""

    everywhere: bool = False
    hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, allow_private: bool, private_hosts: str) -> PrivateAccess:
        """From the two settings (`private_hosts`: comma-separated host names, any case)."""
        names = frozenset(_bare(name.strip()).lower() for name in private_hosts.split(",") if name.strip())
        return cls(allow_private, names)

    def named(self, host: str) -> bool:
        return _bare(host).lower() in self.hosts


class Unreachable(OSError):
    """The host name does not resolve (now, from here)."""


class ForbiddenAddress(ValueError):
    """The host is, or resolves to, an address webhooks may not reach; `address` names it."""

    def __init__(self, host: str, address: Address, why: str) -> None:
        super().__init__(f"{why}; {ALLOW_HINT}")
        self.host = host
        self.address = address


def is_forbidden(address: Address) -> bool:
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


def numeric_address(host: str) -> Address | None:
    """The address a numeric host stands for, read as `inet_aton` reads IPv4; None for a name.

    IPv4 takes one to four parts, each decimal, octal (leading 0) or hexadecimal (0x); the last part
    fills the bytes the others leave. A trailing dot is ignored, so `127.0.0.1.` is judged as
    127.0.0.1 even where a resolver would not take it.
    """
    bare = _bare(host)
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    parts = bare.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_aton_part(part) for part in parts]
    if None in values:
        return None
    numbers = [value for value in values if value is not None]
    *head, last = numbers
    spare = 8 * (5 - len(numbers))  # bits the last part fills
    if any(value > 0xFF for value in head) or last >= 1 << spare:
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    return ipaddress.IPv4Address(number << spare | last)


def is_loopback_name(host: str) -> bool:
    """`localhost` and names under it are loopback by definition (RFC 6761), whatever DNS answers."""
    name = _bare(host).lower()
    return name == "localhost" or name.endswith(".localhost")


async def _addresses_of(host: str, port: int) -> list[Address]:
    """What a connect to `host` would reach: a numeric host as read above, else every resolved address.

    Resolution runs in the loop's executor, never blocking the event loop; `Unreachable` when the
    name does not resolve.
    """
    literal = numeric_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unreachable(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
    if not addresses:
        raise Unreachable(f"{host} resolves to no address")
    return addresses


async def reachable(host: str, port: int, private: PrivateAccess) -> list[Address]:
    """The addresses a connect to `host` may reach, all judged: the one check creation, update and delivery make.

    `ForbiddenAddress` when one may not be reached (a `localhost` name even when it does not resolve),
    `Unreachable` when the name does not resolve.
    """
    try:
        addresses = await _addresses_of(host, port)
    except Unreachable:
        _judge(host, [], private)
        raise
    _judge(host, addresses, private)
    return addresses


def _judge(host: str, addresses: list[Address], private: PrivateAccess) -> None:
    """Raise `ForbiddenAddress` naming the first address webhooks may not reach, unless private ones are allowed."""
    if private.everywhere:
        return
    if private.named(host):
        for address in addresses:
            if address in METADATA_ADDRESSES:
                raise ForbiddenAddress(host, address, f"{host} resolves to {address}, a cloud metadata address")
        return
    if is_loopback_name(host):
        why = f"{host} names the loopback host ({LOOPBACK_NAME}), not a public address"
        raise ForbiddenAddress(host, LOOPBACK_NAME, why)
    literal = numeric_address(host)
    for address in addresses:
        if not is_forbidden(address):
            continue
        if literal is None:
            why = f"{host} resolves to {address}, not a public address"
        elif _bare(host) == str(address):
            why = f"{address} is not a public address"
        else:
            why = f"{host} is {address}, not a public address"
        raise ForbiddenAddress(host, address, why)


def _not_public(address: Address) -> bool:
    return address in METADATA_ADDRESSES or not address.is_global or address.is_multicast


def _bare(host: str) -> str:
    """The host without an IPv6 zone (`%eth0`) or one trailing dot."""
    bare = host.split("%", 1)[0]
    return bare[:-1] if bare.endswith(".") and len(bare) > 1 else bare


def _aton_part(part: str) -> int | None:
    """One part of an `inet_aton` address, or None when the part is not a number that function takes."""
    try:
        if part[:2].lower() == "0x":
            return int(part[2:], 16) if part[2:] and all(c in "0123456789abcdefABCDEF" for c in part[2:]) else None
        if not part.isascii() or not part.isdigit():
            return None
        return int(part, 8) if part.startswith("0") else int(part)
    except ValueError:  # an 8 or 9 in an octal part
        return None
