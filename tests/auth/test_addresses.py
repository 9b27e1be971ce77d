"""One URL judgement: every spelling of an address is refused when the client is created or changed,
exactly as the delivering worker would refuse it, and allowed alike when private addresses are."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth.addresses import PrivateAccess, is_forbidden, numeric_address
from auth.clients import ValidationError
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.ssrf import UnsafeURL, resolve
from tests.authserver import in_loop
from tests.servers import RedisServer

# Host as written in a URL -> the address a connect reaches (what the refusal must name).
LOOPBACK_SPELLINGS = [
    ("127.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("127.0.0.1.", "127.0.0.1"),
    ("[::127.0.0.1]", "::7f00:1"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
    ("[2002:7f00:1::]", "2002:7f00:1::"),
    ("localhost", "127.0.0.1"),
    ("localhost.", "127.0.0.1"),
    ("hooks.localhost", "127.0.0.1"),
]


@pytest.fixture
def settings_(redis_server: RedisServer, prefix: str) -> Settings:
    return Settings(redis_url=redis_server.url, redis_prefix=prefix)


def base(url: str, field: str = "webhook_url") -> dict[str, object]:
    if field == "webhook_url":
        return {"name": "n", "type": "other", "translator": "xapi", "delivery": "webhook", "webhook_url": url}
    return {"name": "n", "type": "other", "translator": "xapi", "delivery": "lrs", "endpoint_url": url,
            "endpoint_token": "t"}


@pytest.mark.parametrize("field", ["webhook_url", "endpoint_url"])
@pytest.mark.parametrize(("host", "address"), LOOPBACK_SPELLINGS)
def test_every_spelling_of_a_private_address_is_refused_at_creation_and_update(
    settings_: Settings, field: str, host: str, address: str
) -> None:
    url = f"http://{host}:8080/in"

    async def create(registry: ClientRegistry) -> None:
        await registry.create(**base(url, field))

    with pytest.raises(ValidationError) as created:
        in_loop(settings_, create)
    assert created.value.field == field
    assert address in created.value.message and "RTHUB_WEBHOOK_ALLOW_PRIVATE" in created.value.message

    async def update(registry: ClientRegistry) -> None:
        client, _ = await registry.create(**base("https://8.8.8.8/in", field))
        await registry.update(client.client_id, **{field: url})

    with pytest.raises(ValidationError) as updated:
        in_loop(settings_, update)
    assert updated.value.field == field and address in updated.value.message

    async def allowed(registry: ClientRegistry) -> str:
        client, _ = await registry.create(**base(url, field))
        return getattr(client, field)

    assert in_loop(dataclasses.replace(settings_, webhook_allow_private=True), allowed) == url


def test_a_name_that_does_not_resolve_is_accepted_with_a_warning(
    settings_: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def create(registry: ClientRegistry) -> str:
        client, _ = await registry.create(**base("https://hooks.rthub.invalid/in"))
        return client.webhook_url

    with caplog.at_level(logging.WARNING, logger="rthub.auth"):
        assert in_loop(settings_, create) == "https://hooks.rthub.invalid/in"
    assert any("hooks.rthub.invalid" in r.getMessage() and "every delivery" in r.getMessage() for r in caplog.records)


def numeric_forms(number: int) -> st.SearchStrategy[str]:
    """`number` written in one of the forms `inet_aton` reads: 1 to 4 parts, each decimal, octal or hex."""

    def part(value: int, style: str) -> str:
        return {"dec": str(value), "oct": "0" + format(value, "o"), "hex": "0x" + format(value, "x")}[style]

    def spell(parts: int, styles: list[str]) -> str:
        octets = number.to_bytes(4, "big")
        head = list(octets[: parts - 1])
        last = int.from_bytes(octets[parts - 1:], "big")
        return ".".join(part(value, style) for value, style in zip([*head, last], styles, strict=True))

    return st.integers(1, 4).flatmap(
        lambda parts: st.lists(st.sampled_from(["dec", "oct", "hex"]), min_size=parts, max_size=parts).map(
            lambda styles: spell(parts, styles)
        )
    )


INTERESTING = st.sampled_from(
    [0x7F000001, 0x0A000001, 0xC0A80101, 0xA9FEA9FE, 0x64400001, 0xE0000001, 0, 0xFFFFFFFF, 0x08080808, 0x01010101]
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), number=st.one_of(st.integers(0, 2**32 - 1), INTERESTING))
def test_creation_and_delivery_judge_every_numeric_form_alike(
    redis_server: RedisServer, data: st.DataObject, number: int
) -> None:
    host = data.draw(numeric_forms(number))
    expected = ipaddress.IPv4Address(number)
    assert socket.inet_aton(host) == expected.packed, "the form is one the platform reads as `number`"
    assert numeric_address(host) == expected
    url = f"http://{host}:8080/in"
    forbidden = is_forbidden(expected)
    store = Settings(redis_url=redis_server.url, redis_prefix="t:numeric-forms:")

    async def both(registry: ClientRegistry) -> tuple[bool, bool]:
        try:
            await registry.create(**base(url))
            created = True
        except ValidationError as exc:
            assert str(expected) in exc.message
            created = False
        try:
            target = await resolve(url, PrivateAccess())
            delivered = True
            assert target.url == f"http://{expected}:8080/in", "delivery connects to the address it judged"
        except UnsafeURL:
            delivered = False
        return created, delivered

    assert in_loop(store, both) == (not forbidden, not forbidden)


def test_delivery_refuses_a_localhost_name_as_loopback_even_where_it_does_not_resolve() -> None:
    async def judged() -> str:
        with pytest.raises(UnsafeURL) as refused:
            await resolve("http://localhost.:9/x", PrivateAccess())
        return str(refused.value)

    assert "loopback" in asyncio.run(judged())


def test_only_the_named_hosts_may_resolve_to_private_addresses(redis_server: RedisServer) -> None:
    """`RTHUB_WEBHOOK_PRIVATE_HOSTS=localhost` lets a deployment reach its own LRS on its private network
    without opening every private address: another name or a numeric private address is still refused,
    at creation and at delivery, and a named host never reaches a cloud metadata address."""
    store = Settings(redis_url=redis_server.url, redis_prefix="t:private-hosts:",
                     webhook_private_hosts=" LocalHost., lrs.internal ")
    assert store.private_access == PrivateAccess(False, frozenset({"localhost", "lrs.internal"}))

    async def judged(registry: ClientRegistry) -> tuple[str, list[str]]:
        created, _ = await registry.create(**base("http://localhost:8100/xAPI/"))
        refused = []
        for url in ("http://127.0.0.1:8100/xAPI/", "http://0x7f000001:8100/", "http://10.0.0.7/in"):
            with pytest.raises(ValidationError) as creation:
                await registry.create(**base(url))
            with pytest.raises(UnsafeURL):
                await resolve(url, store.private_access)
            refused.append(creation.value.message)
        target = await resolve("http://localhost:8100/xAPI/", store.private_access)
        assert target.url.startswith(("http://127.0.0.1:8100/", "http://[::1]:8100/"))
        return created.webhook_url, refused

    url, refused = in_loop(store, judged)
    assert url == "http://localhost:8100/xAPI/"
    assert all("RTHUB_WEBHOOK_PRIVATE_HOSTS" in message for message in refused)


def test_a_named_private_host_still_never_reaches_a_metadata_address() -> None:
    access = PrivateAccess(False, frozenset({"169.254.169.254"}))

    async def judged() -> str:
        with pytest.raises(UnsafeURL) as refused:
            await resolve("http://169.254.169.254/latest/meta-data/", access)
        return str(refused.value)

    assert "metadata" in asyncio.run(judged())
