"""The live feed's own pub/sub reader (`hub.ingest.subscription`), against a real redis-server.

The parser is fed the bytes a real server wrote to a subscribed socket (RESP2 and RESP3), cut at
every offset and in random pieces: it must give back exactly the published payloads, in order. A
`Subscription` opened through redis-py returns every message, in batches when they queue, and says
when the server ends the subscription or the connection, so that the feed resubscribes.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from hub.ingest.subscription import ProtocolError, PushParser, Subscription, SubscriptionLost
from tests.servers import RedisServer

PAYLOADS = [b"1-0\n{}", b"", b"\r\n$3\r\n*2\r\n", "ünïcødé".encode(), bytes(range(256)) * 40, b"x" * 70_000]


def raw_subscribed_bytes(server: RedisServer, protocol: int, payloads: list[bytes]) -> bytes:
    """What redis-server writes to a socket that subscribed (after HELLO `protocol`), then got `payloads`."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"HELLO {protocol}\r\n".encode())
        hello = b""
        while not hello.endswith(b"\r\n") or b"modules" not in hello:
            hello += sock.recv(65536)
        sock.sendall(b"SUBSCRIBE raw-channel\r\n")
        publisher = redis.Redis.from_url(server.url)
        for payload in payloads:
            publisher.publish("raw-channel", payload)
        sock.sendall(b"PING\r\n")
        expected_end = b"+PONG\r\n" if protocol == 3 else b"$0\r\n\r\n"
        data = b""
        while not data.endswith(expected_end):
            data += sock.recv(65536)
        publisher.close()
        return data


def messages_of(replies: list) -> list[bytes]:
    return [reply[2] for reply in replies if isinstance(reply, list) and reply[0] == b"message"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_parser_gives_back_every_payload_wherever_the_reads_split(redis_server: RedisServer, protocol) -> None:
    data = raw_subscribed_bytes(redis_server, protocol, PAYLOADS)
    whole = PushParser().feed(data)
    assert messages_of(whole) == PAYLOADS
    assert whole[0] == [b"subscribe", b"raw-channel", 1]
    for cut in range(0, len(data) + 1, 7 if len(data) > 5000 else 1):
        parser = PushParser()
        replies = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert replies == whole, f"cut at {cut}"


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=20), cuts=st.lists(st.integers(1, 400)))
def test_random_payloads_in_random_pieces(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\n%b\r\n" % (len(p), p) for p in payloads)
    parser, replies, position = PushParser(), [], 0
    for size in cuts:
        replies += parser.feed(data[position : position + size])
        position += size
    replies += parser.feed(data[position:])
    assert messages_of(replies) == payloads


def test_bytes_that_are_not_resp_are_refused() -> None:
    with pytest.raises(ProtocolError):
        PushParser().feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ProtocolError):
        PushParser().feed(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nlonger than two\r\n")
    assert isinstance(PushParser().feed(b"-NOPERM no rights to that channel\r\n")[0], ResponseError)


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_subscription_returns_every_message_in_batches(redis_server: RedisServer, protocol) -> None:
    async def scenario() -> tuple[list[list[bytes]], int]:
        client = aioredis.Redis.from_url(redis_server.url, protocol=protocol)
        subscription = await Subscription.open(client, "sub-channel", sharded=False)
        for number in range(500):  # all published before the first read: they queue on the socket
            await client.publish("sub-channel", f"{number}-0\nevent {number}".encode())
        batches: list[list[bytes]] = []
        while sum(map(len, batches)) < 500:
            batches.append(await asyncio.wait_for(subscription.messages(), 5))
        await subscription.close()
        in_use = len(client.connection_pool._in_use_connections)
        await client.aclose()
        return batches, in_use

    batches, in_use = asyncio.run(scenario())
    assert [m for batch in batches for m in batch] == [f"{n}-0\nevent {n}".encode() for n in range(500)]
    assert len(batches) < 500, "queued messages come back several to a read"
    assert in_use == 0, "closing gives the connection's place back to the pool"


def test_the_end_of_a_subscription_or_of_the_connection_is_reported(redis_server: RedisServer) -> None:
    async def scenario() -> list[str]:
        client = aioredis.Redis.from_url(redis_server.url)
        seen = []
        subscription = await Subscription.open(client, "ending-channel", sharded=False)
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        with pytest.raises(SubscriptionLost) as lost:
            await asyncio.wait_for(subscription.messages(), 5)
        seen.append(str(lost.value))
        await subscription.close()
        subscription = await Subscription.open(client, "ending-channel", sharded=False)
        # The server's `unsubscribe` push, as a cluster sends `sunsubscribe` when a slot moves away.
        await subscription._conn.send_command("UNSUBSCRIBE", "ending-channel", check_health=False)
        with pytest.raises(SubscriptionLost) as lost:
            await asyncio.wait_for(subscription.messages(), 5)
        seen.append(str(lost.value))
        await subscription.close()
        await client.aclose()
        return seen

    assert asyncio.run(scenario()) == [
        "Redis closed the subscribed connection", "the server ended the subscription (b'unsubscribe')"]
