"""Webhook URLs that reach private addresses through IPv6 forms embedding IPv4 (NAT64,
6to4, IPv4-compatible), and receivers that answer with an endless body."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time

import pytest
import redis.asyncio as aioredis

from auth.addresses import is_forbidden
from hub.delivery.webhook.health import delivery_health
from hub.delivery.webhook.ssrf import MAX_RESPONSE_BYTES
from tests.hub.delivery.webhook.helpers import (
    FAST,
    Publisher,
    dead_letters_of_one_event,
    router_on,
    settings_for,
    until,
    write_client,
)
from tests.servers import RedisServer


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the cloud metadata address
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 prefix
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
    ],
)
def test_ipv6_forms_embedding_private_ipv4_are_forbidden(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert parsed.is_global or address.startswith("::"), "these are the ones `is_global` lets through"
    assert is_forbidden(parsed)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_embedding_public_ipv4_stay_allowed(address: str) -> None:
    assert not is_forbidden(ipaddress.ip_address(address))


def test_a_nat64_webhook_url_is_refused_by_the_delivering_worker(redis_server: RedisServer, prefix: str) -> None:
    """The attack: on a NAT64 network `http://[64:ff9b::7f00:1]:PORT/` reaches the hub host's loopback."""

    dead = asyncio.run(dead_letters_of_one_event(redis_server.url, prefix, "http://[64:ff9b::7f00:1]:6379/hook"))
    assert "refused URL" in dead[0]["reason"] and "64:ff9b::7f00:1" in dead[0]["reason"], dead[0]["reason"]


class EndlessReceiver:
    """Answers every POST with 200 and a body announced as 1 GiB, written until the hub hangs up."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.written = 0
        self.hung_up = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        conn.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        length = int(lengths[0].split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while self.written < 1 << 30:
                conn.sendall(chunk)
                self.written += len(chunk)
        except OSError:
            self.hung_up.set()
        conn.close()


def test_an_endless_response_body_is_cut_off_and_the_delivery_counts(redis_server: RedisServer, prefix: str) -> None:
    receiver = EndlessReceiver()

    async def scenario() -> tuple[dict, float]:
        redis = aioredis.Redis.from_url(redis_server.url)
        settings = settings_for(redis_server.url, prefix, (5.0,))
        await write_client(redis, settings, "acme", f"http://127.0.0.1:{receiver.port}/hook")
        router = router_on(redis, settings)
        await router.start()
        started = time.monotonic()
        for entry in await Publisher(redis, settings).entries(1):
            await router.route(entry)
        health: dict = {}

        async def recorded() -> bool:
            health.update((await delivery_health(redis, settings, ["acme"])).get("acme") or {})
            return "last_delivery_at" in health

        await until(recorded, FAST.timeout + 3)
        took = time.monotonic() - started
        await router.close()
        await redis.aclose()
        return health, took

    health, took = asyncio.run(scenario())
    assert health.get("delivered") in (1, "1"), f"a 200 with a huge body is a delivery: {health}"
    assert took < FAST.timeout, "the body was not read to the timeout"
    assert receiver.hung_up.wait(5), "the hub closed the connection instead of reading on"
    assert receiver.written < 1 << 30 and MAX_RESPONSE_BYTES < 1 << 30
