"""The key material the registry records: one key wins a first start however many processes race for
it, key files are named by absolute paths only, and every key file created or loaded is logged."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from auth import keyring
from auth.endpoint_credentials import checked_cipher
from auth.keyring import KeyMismatch
from auth.keys import SigningKeys, load_private_key, rotate_signing_key
from hub.config import ConfigError, Settings
from rthub_lms.keys import key_material
from tests.keyfiles import command_env, rthub
from tests.servers import RedisServer

STARTERS = 8
Start = Callable[[aioredis.Redis, Settings], Awaitable[str]]


async def endpoint_start(redis: aioredis.Redis, settings: Settings) -> str:
    return (await checked_cipher(redis, settings)).fingerprint


async def signing_start(redis: aioredis.Redis, settings: Settings) -> str:
    keys = SigningKeys(settings, redis)
    await keys.start()
    return keys.kid


def race(redis_url: str, all_settings: list[Settings], start: Start) -> list[str | KeyMismatch]:
    """Every starter at once, each in a thread with its own event loop and connection."""
    barrier = threading.Barrier(len(all_settings))
    results: list[str | KeyMismatch] = [""] * len(all_settings)

    async def one(index: int) -> None:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            barrier.wait()
            results[index] = await start(redis, all_settings[index])
        except KeyMismatch as exc:
            results[index] = exc
        finally:
            await redis.aclose()

    threads = [threading.Thread(target=asyncio.run, args=(one(i),)) for i in range(len(all_settings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize(("start", "name", "field"), [
    (endpoint_start, "endpoint.key", keyring.ENDPOINT),
    (signing_start, "signing-key.pem", keyring.SIGNING_KID),
])
def test_concurrent_first_starts_agree_on_one_key(
    redis_server: RedisServer, prefix: str, tmp_path: Path, start: Start, name: str, field: str
) -> None:
    """Half the starters share a data directory, the others have one each: one key is recorded; every
    starter holding it goes on, the others refuse and leave no key of their own behind."""
    dirs = [tmp_path / "shared"] * (STARTERS // 2) + [tmp_path / f"own-{i}" for i in range(STARTERS // 2)]
    all_settings = [Settings(redis_url=redis_server.url, redis_prefix=prefix, data_dir=str(d)) for d in dirs]
    results = race(redis_server.url, all_settings, start)

    async def recorded_value() -> str:
        redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            return str(await redis.hget(key_material(all_settings[0]), field))
        finally:
            await redis.aclose()

    recorded = asyncio.run(recorded_value())
    started = [d for d, result in zip(dirs, results, strict=True) if isinstance(result, str)]
    assert started and all(result == recorded for result in results if isinstance(result, str))
    assert len(set(started)) == 1, "only the starters of one data directory hold the recorded key"
    for directory, result in zip(dirs, results, strict=True):
        if isinstance(result, KeyMismatch):
            assert recorded in str(result) and directory not in started
            assert not (directory / name).exists(), "a refused starter removes the key it generated"
    assert [d for d in set(dirs) if (d / name).exists()] == [started[0]]


def test_key_files_need_absolute_paths_and_default_to_one_data_directory(tmp_path: Path) -> None:
    home = Settings.from_env({"HOME": "/srv/rthub-user"})
    assert home.data_dir == "/srv/rthub-user/.local/share/rthub"
    assert home.signing_key_path == "/srv/rthub-user/.local/share/rthub/signing-key.pem"
    assert home.endpoint_key_path == "/srv/rthub-user/.local/share/rthub/endpoint.key"
    xdg = Settings.from_env({"HOME": "/srv/rthub-user", "XDG_DATA_HOME": "/var/lib"})
    assert xdg.endpoint_key_path == "/var/lib/rthub/endpoint.key"
    chosen = Settings.from_env({"RTHUB_DATA_DIR": "/data", "RTHUB_SIGNING_KEY_FILE": "/keys/sign.pem"})
    assert (chosen.signing_key_path, chosen.endpoint_key_path) == ("/keys/sign.pem", "/data/endpoint.key")

    for name, value in (("DATA_DIR", "data"), ("ENDPOINT_KEY_FILE", "rthub-endpoint.key"),
                        ("SIGNING_KEY_FILE", "keys/signing-key.pem")):
        with pytest.raises(ConfigError, match=f"RTHUB_{name}: expected an absolute path"):
            Settings.from_env({f"RTHUB_{name}": value})
    refused = rthub(tmp_path, {**command_env("redis://127.0.0.1:1/0", "p:", tmp_path),
                               "RTHUB_ENDPOINT_KEY_FILE": "rthub-endpoint.key"}, "clients", "list")
    assert refused.returncode == 2
    assert "RTHUB_ENDPOINT_KEY_FILE: expected an absolute path, got 'rthub-endpoint.key'" in refused.stderr
    assert not list(tmp_path.iterdir())


def test_every_key_file_created_or_loaded_is_logged_with_its_absolute_path(
    redis_server: RedisServer, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix, data_dir=str(tmp_path / "keys"))

    async def start_twice() -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            for _ in range(2):
                await endpoint_start(redis, settings)
                await signing_start(redis, settings)
        finally:
            await redis.aclose()

    with caplog.at_level(logging.INFO, logger="rthub.keys"):
        asyncio.run(start_twice())
    lines = [record.getMessage() for record in caplog.records if record.name == "rthub.keys"]
    endpoint, signing = settings.endpoint_key_path, settings.signing_key_path
    kid = load_private_key(signing).kid
    assert [line.split(" (")[0] for line in lines] == [
        f"endpoint key created at {endpoint}", f"signing key created at {signing}",
        f"endpoint key loaded from {endpoint}", f"signing key loaded from {signing}",
    ]
    assert lines[1].endswith(f"(kid {kid})")


def test_rotation_from_a_directory_without_the_current_key_is_refused(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    deployment = Settings(redis_url=redis_server.url, redis_prefix=prefix, data_dir=str(tmp_path / "deployment"))
    elsewhere = deployment.with_overrides(data_dir=str(tmp_path / "elsewhere"))

    async def scenario() -> tuple[str, KeyMismatch, str]:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            current = await signing_start(redis, deployment)
            with pytest.raises(KeyMismatch) as refused:
                await rotate_signing_key(redis, elsewhere)
            return current, refused.value, (await keyring.read(redis, deployment)).signing_kid
        finally:
            await redis.aclose()

    current, refused, recorded = asyncio.run(scenario())
    assert recorded == current, "the registry is unchanged"
    assert f"no signing key file at {elsewhere.signing_key_path}" in str(refused) and current in str(refused)
    assert not Path(elsewhere.signing_key_path).exists()
