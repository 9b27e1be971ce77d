"""The pure parts: retry timing, Retry-After parsing, the SSRF address rules, message ids, secrets."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from auth.addresses import PrivateAccess, is_forbidden
from hub.config import Settings
from hub.delivery.webhook.handoff import Covers
from hub.delivery.webhook.outbox import Item
from hub.delivery.webhook.schedule import parse_retry_after, retry_delay
from hub.delivery.webhook.signing import SecretError, Signer, message_id, new_secret
from hub.delivery.webhook.ssrf import UnsafeURL, resolve
from hub.ingest import cursor_key, predecessor

SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 86400.0)  # any schedule; not the default


def test_retry_delays_follow_the_schedule_with_bounded_jitter() -> None:
    rng = random.Random(7)
    for attempt, step in enumerate(SCHEDULE, start=1):
        delays = [retry_delay(SCHEDULE, attempt, rng=rng) for _ in range(200)]
        assert all(0.8 * step <= d <= 1.2 * step for d in delays)
        assert len(set(delays)) > 100
    assert retry_delay(SCHEDULE, len(SCHEDULE) + 1) is None


def test_retry_after_replaces_the_step_but_never_exceeds_the_longest_one() -> None:
    assert retry_delay(SCHEDULE, 1, retry_after=42) == 42
    assert retry_delay(SCHEDULE, 1, retry_after=10**9) == 86400
    assert retry_delay(SCHEDULE, 8, retry_after=1) is None


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after("120") == 120
    assert parse_retry_after(later, now) == 90
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200", "0.0.0.0",
     "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "224.0.0.1", "100.64.0.1"],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/hook", "http://localhost:8080/hook", "https://[::1]/x", "http://169.254.169.254/latest",
     "http://10.0.0.5/", "ftp://8.8.8.8/", "http://user:pw@8.8.8.8/", "http:///nohost"],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        asyncio.run(resolve(url, PrivateAccess()))


def test_allowed_private_targets_are_pinned_to_the_checked_address() -> None:
    target = asyncio.run(resolve("http://localhost:8080/hook?x=1", PrivateAccess(everywhere=True)))
    assert target.url in {"http://127.0.0.1:8080/hook?x=1", "http://[::1]:8080/hook?x=1"}
    assert target.host == "localhost:8080" and target.sni is None
    public = asyncio.run(resolve("https://8.8.8.8/in", PrivateAccess()))
    assert public.url == "https://8.8.8.8/in" and public.sni is None


def test_signer_matches_the_reference_verifier_and_ids_are_stable() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    body = '{"type":"event","cursor":"1-0"}'
    headers = Signer(secret).headers(message_id(["1-0"]), body, datetime.now(UTC).timestamp())
    assert Webhook(secret).verify(body, headers)["cursor"] == "1-0"
    assert message_id(["1-0"]) == "msg_1-0" and message_id(["1-0", "2-0", "3-5"]) == "msg_1-0_3-5"
    with pytest.raises(SecretError):
        Signer("not-a-secret")


def test_the_default_schedule_is_svix_s() -> None:
    assert Settings().webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert Settings().webhook_disable_after == 5 * 86400


def _items(*cursors: str) -> list[Item]:
    return [Item("outbox", cursor, cursor, "{}") for cursor in cursors]


def test_covers_drop_what_sockets_had_hold_what_a_live_socket_owns_and_keep_order() -> None:
    closed = Covers(None, None, [("10-0,20-0", cursor_key("10-0"), cursor_key("20-0"))])
    split = closed.split(_items("5-0", "10-0", "11-0", "20-0", "21-0"))
    assert [i.cursor for i in split.drop] == ["11-0", "20-0"]
    assert [i.cursor for i in split.deliver] == ["5-0", "10-0", "21-0"]
    assert (split.held, split.finished_ranges) == (False, ["10-0,20-0"])

    live = Covers(cursor_key("30-0"), cursor_key("32-0"), [])
    split = live.split(_items("29-0", "30-0", "31-0", "32-0", "33-0", "34-0"))
    assert [i.cursor for i in split.deliver] == ["29-0", "30-0"]
    assert [i.cursor for i in split.drop] == ["31-0", "32-0"]
    assert split.held  # 33-0 onwards waits for the socket to leave


def test_a_range_is_forgotten_only_once_the_queue_has_moved_past_it() -> None:
    covers = Covers(None, None, [("10-0,20-0", cursor_key("10-0"), cursor_key("20-0"))])
    assert covers.split(_items("12-0", "20-0")).finished_ranges == []  # later events may still be routed
    assert covers.split([]).finished_ranges == []


def test_predecessor_is_the_id_just_before() -> None:
    assert predecessor("5-3") == "5-2"
    assert predecessor("5-0") == f"4-{2**64 - 1}"
    assert predecessor("0-0") == "0-0"
