"""`rthub doctor` as an operator runs it: a subprocess in its own directory, against real Redis and peers."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auth.endpoint_credentials import checked_cipher
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.dev.embedded import free_port
from tests import ROOT
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hub.delivery.webhook.receiver import Receiver
from tests.servers import RedisServer


def doctor(settings: Settings, cwd: Path) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lms"), str(ROOT / "client")]),
           "RTHUB_REDIS_URL": settings.redis_url, "RTHUB_REDIS_PREFIX": settings.redis_prefix,
           "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_DATA_DIR": settings.data_dir}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "doctor", "--json"], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)
    return done.returncode, json.loads(done.stdout)


def by_client(report: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        if finding["subject"].startswith("client "):
            found.setdefault(finding["subject"].split()[1], []).append(finding)
    return found


async def create(settings: Settings, **values: object) -> str:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        client, _ = await ClientRegistry(redis, settings).create(type="enterprise", translator="xapi", grant=[{}],
                                                                 **values)
        return client.client_id
    finally:
        await redis.aclose()


async def pause(settings: Settings, client_id: str) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await ClientRegistry(redis, settings).pause_endpoint(client_id, "HTTP 401 from the LRS")
    finally:
        await redis.aclose()


@pytest.mark.slow
def test_doctor_passes_working_endpoints_and_names_each_broken_one_with_its_fix(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, webhook_allow_private=True,
                        data_dir=str(tmp_path / "keys"))
    with Receiver() as receiver:
        lrs = {"delivery": "lrs", "endpoint_url": ralph.endpoint, "endpoint_username": ralph.username}
        ids = asyncio.run(_clients(settings, receiver.url, lrs, ralph.password))
        (tmp_path / "elsewhere").mkdir()
        status, report = doctor(settings, tmp_path / "elsewhere")
    findings = by_client(report)
    assert [f["severity"] for f in findings[ids["webhook"]]] == ["ok"]
    assert [f["severity"] for f in findings[ids["lrs"]]] == ["ok"]
    assert findings[ids["closed"]][0]["severity"] == "fail" and "cannot reach" in findings[ids["closed"]][0]["message"]
    refused = findings[ids["wrong password"]][0]
    assert refused["severity"] == "fail" and "HTTP 401" in refused["message"]
    assert "rotate-endpoint-credential" in refused["fix"]
    paused = findings[ids["paused"]]
    assert paused[0]["severity"] == "fail" and "paused" in paused[0]["message"]
    assert ids["websocket"] not in findings
    assert status == 1 and report["ok"] is False


async def _clients(settings: Settings, webhook_url: str, lrs: dict, password: str) -> dict[str, str]:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    ids = {
        "webhook": await create(settings, name="hook", delivery="webhook", webhook_url=webhook_url),
        "closed": await create(settings, name="closed", delivery="webhook", webhook_url=closed),
        "lrs": await create(settings, name="lrs", endpoint_password=password, **lrs),
        "wrong password": await create(settings, name="bad", endpoint_password="not-it", **lrs),
        "paused": await create(settings, name="paused", endpoint_password=password, **lrs),
        "websocket": await create(settings, name="socket"),
    }
    await pause(settings, ids["paused"])
    return ids


@contextmanager
def self_signed_https(directory: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no trust store knows (as a receiver behind a
    misconfigured proxy): its URL."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, address: None  # the doctor's refused handshakes are the point
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_doctor_names_a_host_that_does_not_resolve_and_a_certificate_it_cannot_verify(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """The DNS and TLS halves of reachability: each fails with what was wrong, never passes as reachable."""
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, webhook_allow_private=True,
                        data_dir=str(tmp_path / "keys"))
    with self_signed_https(tmp_path / "tls") as url:

        async def clients() -> dict[str, str]:
            return {"dns": await create(settings, name="dns", delivery="webhook",
                                        webhook_url="https://hooks.rthub.invalid/hook"),
                    "tls": await create(settings, name="tls", delivery="webhook", webhook_url=url)}

        ids = asyncio.run(clients())
        (tmp_path / "elsewhere").mkdir()
        status, report = doctor(settings, tmp_path / "elsewhere")
    findings = by_client(report)
    (dns,) = findings[ids["dns"]]
    assert dns["severity"] == "fail" and "cannot resolve hooks.rthub.invalid" in dns["message"], dns
    assert "DNS" in dns["fix"]
    (tls,) = findings[ids["tls"]]
    assert tls["severity"] == "fail" and "CERTIFICATE_VERIFY_FAILED" in tls["message"], tls
    assert "TLS" in tls["fix"]
    assert status == 1 and report["ok"] is False


def test_doctor_fails_naming_the_redis_it_cannot_reach(tmp_path: Path) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", data_dir=str(tmp_path / "data"))
    status, report = doctor(settings, tmp_path)
    assert status == 1
    assert report["findings"][0]["severity"] == "fail"
    assert settings.redis_url in report["findings"][0]["subject"]


def test_doctor_names_an_evicting_redis_without_persistence(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", extra=("--maxmemory-policy", "allkeys-lru"))
    server.start()
    try:
        status, report = doctor(Settings(redis_url=server.url, data_dir=str(tmp_path / "data")), tmp_path)
    finally:
        server.stop()
    failed = {f["subject"].split()[-1]: f for f in report["findings"] if f["severity"] == "fail"}
    assert status == 1
    assert set(failed) == {"maxmemory-policy", "appendonly/save"}
    assert "noeviction" in failed["maxmemory-policy"]["fix"] and "appendonly yes" in failed["appendonly/save"]["fix"]


def test_doctor_passes_a_safe_deployment_whose_endpoints_work(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        settings = Settings(redis_url=server.url, redis_prefix="doctor:", webhook_allow_private=True,
                            data_dir=str(tmp_path / "data"))
        with Receiver() as receiver:
            client_id = asyncio.run(create(settings, name="hook", delivery="webhook", webhook_url=receiver.url))
            status, report = doctor(settings, tmp_path)
    finally:
        server.stop()
    assert [f["severity"] for f in report["findings"]] == ["ok"] * 5, report
    assert client_id in report["findings"][4]["subject"]
    assert status == 0 and report["ok"] is True


def test_doctor_names_a_key_file_the_registry_does_not_record(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A hub made and recorded the deployment's endpoint key; the doctor runs with another data directory."""
    hub_side = Settings(redis_url=redis_server.url, redis_prefix=prefix, data_dir=str(tmp_path / "hub"))

    async def first_start() -> str:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            return (await checked_cipher(redis, hub_side)).fingerprint
        finally:
            await redis.aclose()

    recorded = asyncio.run(first_start())
    elsewhere = Settings(redis_url=redis_server.url, redis_prefix=prefix, data_dir=str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "endpoint.key").write_bytes(Fernet.generate_key())
    status, report = doctor(elsewhere, tmp_path)
    (finding,) = [f for f in report["findings"] if f["subject"].startswith("endpoint key")]
    assert status == 1 and finding["severity"] == "fail"
    assert recorded in finding["message"] and str(tmp_path / "other" / "endpoint.key") in finding["message"]
    assert "RTHUB_DATA_DIR" in finding["fix"]
