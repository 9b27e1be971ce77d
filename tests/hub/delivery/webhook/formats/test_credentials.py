"""Endpoint credentials: encrypted at rest, never shown after creation, validated like other fields."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from auth.clients import ValidationError
from auth.endpoint_credentials import CredentialError, EndpointCipher
from auth.registry import ClientRegistry
from hub.config import Settings
from hub.delivery.webhook.clients import webhook_view
from rthub_lms import keys as rkeys
from tests.hubproc import ROOT
from tests.servers import RedisServer

PASSWORD = "s3cret-lrs-password"


def settings_for(redis_server: RedisServer, prefix: str, key_file: Path) -> Settings:
    return Settings(redis_url=redis_server.url, redis_prefix=prefix, webhook_allow_private=True,
                    endpoint_key_file=str(key_file))


def test_password_is_stored_encrypted_and_only_the_key_file_opens_it(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_server, prefix, tmp_path / "endpoint.key")

    async def scenario() -> tuple[dict, object, object, object]:
        redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        registry = ClientRegistry(redis, settings)
        client, _ = await registry.create(
            name="lrs", type="enterprise", translator="xapi", delivery="lrs", endpoint_url="https://lrs.example/xAPI/",
            endpoint_username="hub", endpoint_password=PASSWORD, grant=[{}],
        )
        raw = await redis.hgetall(rkeys.client_key(rkeys.Prefix(prefix), client.client_id))
        (tmp_path / "other.key").write_bytes(Fernet.generate_key())  # another deployment's key
        other_key = settings_for(redis_server, prefix, tmp_path / "other.key")
        views = (webhook_view(client, settings), webhook_view(client, other_key))
        await redis.aclose()
        return raw, client, *views

    raw, client, view, wrong_key_view = asyncio.run(scenario())
    assert PASSWORD not in json.dumps(raw)
    assert EndpointCipher(tmp_path / "endpoint.key").decrypt(raw["endpoint_credential"]) == PASSWORD
    with pytest.raises(CredentialError):
        EndpointCipher(tmp_path / "other.key").decrypt(raw["endpoint_credential"])
    assert oct(os.stat(tmp_path / "endpoint.key").st_mode & 0o777) == "0o600"
    assert PASSWORD not in json.dumps(client.public())
    assert view is not None and view.url == "https://lrs.example/xAPI/statements"
    assert view.sender is not None and view.sender.headers["x-experience-api-version"] == "1.0.3"
    # Under another key file the client is paused, not dropped: routed, its events kept, the reason shown.
    assert wrong_key_view is not None and wrong_key_view.paused and wrong_key_view.paused_for == "credential"
    assert wrong_key_view.sender is None and "does not decrypt" in wrong_key_view.pause_reason


def test_cli_show_and_list_never_print_the_credential(redis_server: RedisServer, prefix: str, tmp_path: Path) -> None:
    env = {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix,
           "RTHUB_ENDPOINT_KEY_FILE": str(tmp_path / "endpoint.key"), "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}

    def rthub(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    created = rthub("clients", "create", "--name", "cal", "--type", "university", "--translator", "caliper",
                    "--delivery", "caliper-endpoint", "--endpoint-url", "https://caliper.example/events",
                    "--endpoint-token", PASSWORD, "--json")
    client_id = json.loads(created.splitlines()[0])["client_id"]
    rotated = rthub("clients", "rotate-endpoint-credential", client_id, "--endpoint-token", PASSWORD + "-2")
    for output in (created, rthub("clients", "show", client_id), rthub("clients", "list", "--json"), rotated):
        assert PASSWORD not in output
    assert "endpoint_credential_set: True" in rotated


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"translator": "caliper", "endpoint_username": "u", "endpoint_password": "p"}, "translator"),
        ({"endpoint_username": "u"}, "endpoint_password"),
        ({"endpoint_password": "p"}, "endpoint_username"),
        ({"endpoint_url": "https://u:p@lrs.example/xAPI/", "endpoint_token": "t"}, "endpoint_url"),
        ({"endpoint_token": "t", "endpoint_password": "p", "endpoint_username": "u"}, "endpoint_token"),
        ({"endpoint_token": "t", "webhook_batch_max": 0}, "webhook_batch_max"),
    ],
)
def test_endpoint_fields_are_validated(
    redis_server: RedisServer, prefix: str, tmp_path: Path, fields: dict, field: str
) -> None:
    settings = settings_for(redis_server, prefix, tmp_path / "endpoint.key")
    values = {"name": "lrs", "type": "enterprise", "translator": "xapi", "delivery": "lrs",
              "endpoint_url": "https://lrs.example/xAPI/", **fields}

    async def create() -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            await ClientRegistry(redis, settings).create(**values)
        finally:
            await redis.aclose()

    with pytest.raises(ValidationError) as refused:
        asyncio.run(create())
    assert refused.value.field == field
