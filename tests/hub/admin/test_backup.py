"""`rthub admin export` / `rthub admin import` as real subprocesses against real Redis servers: a registry
lost with its Redis comes back, clients authenticate, webhooks are delivered and signed as before, and
learners keep their anonymised ids; bad or conflicting files change nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from auth.clients import Client
from auth.endpoint_credentials import cipher
from auth.registry import ClientRegistry
from hub.admin.backup import export, output_file
from hub.anonymise import RedisIdStore
from hub.config import Settings
from hub.dev.simulator import SimulatedLMS
from hub.redis import client as redis_client
from rthub_lms.backend import RealtimeBackend
from rthub_lms.keys import Prefix, anon_key, key_material
from tests import ROOT, SEND_TIMEOUT
from tests.hub.delivery.webhook.helpers import until_delivering, verify_by_hand
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import HubProcess, InProcessHub
from tests.servers import RedisCluster, RedisServer
from tests.waiting import wait_until

HUB_ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.5"}
ENDPOINT_PASSWORD = "lrs-password-in-clear-4711"


def rthub(
    redis_url: str, prefix: str, *args: str, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`rthub ARGS --redis-url URL --redis-prefix PREFIX` in `cwd`; the environment names another Redis, so
    only the flags can make it work."""
    env = {**os.environ, "RTHUB_REDIS_URL": "redis://127.0.0.1:1/0", "RTHUB_REDIS_PREFIX": "wrong:",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lms"), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "hub.cli", *args, "--redis-url", redis_url, "--redis-prefix", prefix]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=120, input=stdin)


def on_registry(redis_url: str, prefix: str, work: Any, settings: Settings | None = None) -> Any:
    """Run `work(registry, id_store)` on a fresh event loop (the in-process hub may hold this thread's)."""
    settings = settings or Settings(redis_url=redis_url, redis_prefix=prefix)

    async def go() -> Any:
        client = redis_client(redis_url)
        try:
            return await work(ClientRegistry(client, settings), RedisIdStore(client, settings))
        finally:
            await client.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def record(redis_url: str, prefix: str, client_id: str) -> Client | None:
    async def get(registry: ClientRegistry, _: RedisIdStore) -> Client | None:
        return await registry.get(client_id)

    return on_registry(redis_url, prefix, get)


def keys_under(server: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(server.scan_iter(match=f"{prefix}*"))


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running


def test_export_flushall_import_restores_clients_webhooks_and_anonymised_ids(
    own_redis: RedisServer, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "hub").mkdir()
    (tmp_path / "job").mkdir()  # the commands run elsewhere, as in a throw-away container under Tutor
    hub = HubProcess(own_redis.url, prefix, env=HUB_ENV, cwd=tmp_path / "hub")
    hub.start()
    stored = own_redis.client()
    try:
        socket_id, socket_secret = hub.client(name="sockets")
        hook_id, hook_secret = hub.client(name="hooks", delivery="webhook", webhook_url=receiver.url)
        lrs_id, lrs_secret = hub.client(
            name="lrs", delivery="lrs", endpoint_url="http://127.0.0.1:9/xapi/", endpoint_username="rthub",
            endpoint_password=ENDPOINT_PASSWORD, grant=[],
        )
        before = {cid: record(own_redis.url, prefix, cid) for cid in (socket_id, hook_id, lrs_id)}
        webhook_secret = before[hook_id].webhook_secret  # type: ignore[union-attr]
        until_delivering(hub, hook_id)
        backend = RealtimeBackend(redis_url=own_redis.url, redis_prefix=prefix, timeout=SEND_TIMEOUT)
        event = SimulatedLMS(seed=38).next_event()
        first = backend.send(event)
        wait_until(lambda: len(receiver.requests) == 1, 20, "the webhook client got no event before the backup")
        user = str(event["context"]["user_id"])
        anonymised = stored.hget(anon_key(Prefix(prefix), "other"), user).decode()
        assert anonymised.encode() in receiver.requests[0].body and receiver.requests[0].json["cursor"] == first

        backup = tmp_path / "registry.jsonl"
        exported = rthub(own_redis.url, prefix, "admin", "export", str(backup), cwd=tmp_path / "job")
        assert exported.returncode == 0, exported.stderr
        assert "exported 3 clients and 1 anonymised ids" in exported.stderr
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        text = backup.read_text()
        for clear in (socket_secret, hook_secret, lrs_secret, ENDPOINT_PASSWORD):
            assert clear not in text
        records = [json.loads(line)["client"]["record"] for line in text.splitlines() if '"client"' in line[:10]]
        assert len(records) == 3 and all(r["secret_hash"].startswith("sha256$") for r in records)

        hub.stop()
        stored.flushall()
        assert record(own_redis.url, prefix, hook_id) is None
        imported = rthub(own_redis.url, prefix, "admin", "import", str(backup), cwd=tmp_path / "job")
        assert imported.returncode == 0, imported.stderr
        assert "clients: 3 new, 0 replaced, 0 unchanged; anonymised ids: 1 new" in imported.stderr
        again = rthub(own_redis.url, prefix, "admin", "import", str(backup), cwd=tmp_path / "job")
        assert again.returncode == 0, again.stderr
        assert "clients: 0 new, 0 replaced, 3 unchanged; anonymised ids: 0 new, 1 unchanged" in again.stderr

        hub.start()
        after = {cid: record(own_redis.url, prefix, cid) for cid in before}
        assert after == before
        lrs = after[lrs_id]
        assert lrs is not None
        assert cipher(hub.settings.endpoint_key_path).decrypt(lrs.endpoint_credential) == ENDPOINT_PASSWORD
        assert hub.token_for(socket_id, socket_secret) and hub.token_for(hook_id, hook_secret)
        until_delivering(hub, hook_id)
        second = backend.send(event)  # the same learner again
        backend.close()
        wait_until(lambda: len(receiver.requests) == 2, 20, "the restored webhook client got no event")
        delivered = receiver.requests[1]
        assert delivered.json["cursor"] == second and verify_by_hand(webhook_secret, delivered)
        assert anonymised.encode() in delivered.body
        assert stored.hget(anon_key(Prefix(prefix), "other"), user).decode() == anonymised
    finally:
        stored.close()
        hub.stop()


@pytest.fixture
def exported(redis_server: RedisServer, prefix: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A registry of two clients, with key fingerprints and anonymised ids, exported to a file (in this
    process: the tests using it run the import command)."""
    path = tmp_path / "backup.jsonl"

    async def fill(registry: ClientRegistry, ids: RedisIdStore) -> list[str]:
        created = [(await registry.create(name=name, type="adaptive", translator="xapi"))[0].client_id
                   for name in ("one", "two")]
        await registry.redis.hset(key_material(registry.settings), mapping={"endpoint": "fp-a", "signing_kid": "k1"})
        for user in range(20):
            await ids.get_or_create("adaptive", str(user))
        with output_file(str(path)) as handle:
            await export(registry, ids, handle)
        return created

    return path, on_registry(redis_server.url, prefix, fill)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda items: [{**items[0], "format": "something-else"}, *items[1:]], "not an rthub registry backup"),
        (lambda items: [{**items[0], "version": 99}, *items[1:]], "version 99"),
        (lambda items: items[:-1], "incomplete"),
        (lambda items: [*items[:-1], {"end": {"clients": 5, "anonymised_ids": 20}}], "the end line says"),
        (lambda items: [items[0], {"surprise": 1}, *items[1:]], "line 2: expected an object"),
        (lambda items: [items[0], *[_clear_secret(item) for item in items[1:]]], "never a clear secret"),
        (lambda items: [items[0], *[_drop(item, "name") for item in items[1:]]], "invalid name: required"),
        (lambda items: [items[0], *[_bad_id(item) for item in items[1:]]], "must be a UUID"),
    ],
    ids=["format", "version", "truncated", "counts", "kind", "clear-secret", "required-field", "bad-uuid"],
)
def test_a_bad_file_is_refused_before_anything_is_written(
    redis_server: RedisServer, prefix: str, exported: tuple[Path, list[str]], tmp_path: Path,
    change: Any, needle: str,
) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", change(lines(exported[0])))
    result = rthub(redis_server.url, prefix + "copy:", "admin", "import", str(bad))
    assert result.returncode == 2
    assert needle in result.stderr and "cannot be imported" in result.stderr
    assert keys_under(redis_server.client(), prefix + "copy:") == []


def _clear_secret(item: dict[str, Any]) -> dict[str, Any]:
    if "client" in item:
        item["client"]["record"]["secret_hash"] = "a-secret-in-clear"
    return item


def _drop(item: dict[str, Any], name: str) -> dict[str, Any]:
    if "client" in item:
        del item["client"]["record"][name]
    return item


def _bad_id(item: dict[str, Any]) -> dict[str, Any]:
    if "anonymised_ids" in item:
        item["anonymised_ids"]["ids"]["0"] = "user-0"
    return item


def test_import_refuses_a_changed_client_without_replace(
    redis_server: RedisServer, prefix: str, exported: tuple[Path, list[str]]
) -> None:
    path, (first, _) = exported
    changed = rthub(redis_server.url, prefix, "clients", "update", first, "--name", "renamed since")
    assert changed.returncode == 0, changed.stderr
    refused = rthub(redis_server.url, prefix, "admin", "import", str(path))
    assert refused.returncode == 2
    assert "nothing written" in refused.stderr and first in refused.stderr and "--replace" in refused.stderr
    assert record(redis_server.url, prefix, first).name == "renamed since"  # type: ignore[union-attr]

    replaced = rthub(redis_server.url, prefix, "admin", "import", str(path), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "clients: 0 new, 1 replaced, 1 unchanged" in replaced.stderr
    assert record(redis_server.url, prefix, first).name == "one"  # type: ignore[union-attr]


def test_import_refuses_other_key_fingerprints_without_force(
    redis_server: RedisServer, prefix: str, exported: tuple[Path, list[str]]
) -> None:
    path, created = exported
    target = prefix + "moved:"
    server = redis_server.client()
    server.hset(key_material(Prefix(target)), mapping={"endpoint": "fp-b", "signing_kid": "k1"})
    refused = rthub(redis_server.url, target, "admin", "import", str(path))
    assert refused.returncode == 2
    assert "key fingerprints" in refused.stderr and "endpoint" in refused.stderr and "--force" in refused.stderr
    assert keys_under(server, target) == [key_material(Prefix(target)).encode()]

    forced = rthub(redis_server.url, target, "admin", "import", str(path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "key fingerprints: differ (kept)" in forced.stderr
    assert all(record(redis_server.url, target, cid) == record(redis_server.url, prefix, cid) for cid in created)
    assert server.hget(key_material(Prefix(target)), "endpoint") == b"fp-b"


def test_dry_run_reports_and_writes_nothing(
    redis_server: RedisServer, prefix: str, exported: tuple[Path, list[str]]
) -> None:
    path, created = exported
    target = prefix + "dry:"
    result = rthub(redis_server.url, target, "admin", "import", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted([f"add: {created[0]} (one)", f"add: {created[1]} (two)"])
    assert "would import clients: 2 new" in result.stderr and "anonymised ids: 20 new" in result.stderr
    assert keys_under(redis_server.client(), target) == []


def test_export_without_anonymised_ids_and_a_moved_prefix(
    redis_server: RedisServer, prefix: str, exported: tuple[Path, list[str]], tmp_path: Path
) -> None:
    _, created = exported
    path = tmp_path / "clients-only.jsonl"
    result = rthub(redis_server.url, prefix, "admin", "export", str(path), "--no-anonymised-ids")
    assert result.returncode == 0, result.stderr
    items = lines(path)
    assert items[0]["anonymised_ids"] is False and not any("anonymised_ids" in item for item in items[1:-1])
    assert items[-1] == {"end": {"clients": 2, "anonymised_ids": 0}}
    target = prefix + "moved:"
    imported = rthub(redis_server.url, target, "admin", "import", str(path), "--json")
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["clients"] == dict.fromkeys(created, "new") and report["from_prefix"] == prefix
    assert report["keys"] == "restored"
    server = redis_server.client()
    assert server.hgetall(key_material(Prefix(target))) == {b"endpoint": b"fp-a", b"signing_kid": b"k1"}
    assert json.loads(server.hget(f"{target}{{registry}}:grants", created[0])) == []


def test_round_trip_on_a_cluster_through_stdout_and_stdin(redis_cluster: RedisCluster, prefix: str) -> None:
    hub = InProcessHub(redis_cluster.url, prefix)
    hub.start()
    try:
        client_id, secret = hub.client(name="on a cluster")

        async def fill(_: ClientRegistry, ids: RedisIdStore) -> dict[tuple[str, str], str]:
            return {(kind, str(user)): await ids.get_or_create(kind, str(user))
                    for kind in ("adaptive", "university") for user in range(1500)}

        anonymised = on_registry(redis_cluster.url, prefix, fill)
        exported = rthub(redis_cluster.url, prefix, "admin", "export", "-")
        assert exported.returncode == 0, exported.stderr
        assert "exported 1 clients and 3000 anonymised ids" in exported.stderr
        hub.stop()  # a running hub writes its own keys again (routing's noted position) as they are deleted
        cluster = redis_cluster.client()
        for key in list(cluster.scan_iter(match=f"{prefix}*")):
            cluster.delete(key)
        assert not list(cluster.scan_iter(match=f"{prefix}*"))

        imported = rthub(redis_cluster.url, prefix, "admin", "import", "-", stdin=exported.stdout)
        assert imported.returncode == 0, imported.stderr
        assert "clients: 1 new" in imported.stderr and "anonymised ids: 3000 new" in imported.stderr
        hub.start()
        assert hub.token_for(client_id, secret)

        async def read(_: ClientRegistry, ids: RedisIdStore) -> dict[tuple[str, str], str]:
            return {(kind, user): value for kind in ("adaptive", "university")
                    async for batch in ids.scan(kind) for user, value in batch.items()}

        assert on_registry(redis_cluster.url, prefix, read) == anonymised
        cluster.close()
    finally:
        hub.stop()
