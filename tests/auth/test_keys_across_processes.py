"""Key material that cannot diverge, with real processes in different working directories (as under Tutor,
where `rthub` commands run in throw-away containers): hubs and commands that share the data directory
share the keys; one that does not refuses, naming both keys and the setting; a signing key rotation run
anywhere reaches every hub.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from joserfc.jwk import ECKey
from websockets.sync.client import connect

from auth.keyring import fingerprint
from auth.keys import load_private_key
from tests.hubproc import HubProcess
from tests.keyfiles import command_env, data_dir, home_env, rthub
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = pytest.mark.hub_process
ISSUER = {"RTHUB_ISSUER": "http://127.0.0.1"}  # hubs of one deployment share their public URL


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def published(hub: HubProcess) -> list[str]:
    return [key["kid"] for key in httpx.get(f"{hub.http}/.well-known/jwks.json", timeout=5).json()["keys"]]


def welcome(hub: HubProcess, token: str) -> dict[str, Any]:
    """The stream's first frame for `token` on `hub` (a refused token closes the socket instead)."""
    with connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        return dict(json.loads(ws.recv(timeout=10)))


def admin_clients(hub: HubProcess, token: str) -> int:
    return httpx.get(f"{hub.http}/admin/api/clients", headers={"Authorization": f"Bearer {token}"},
                     timeout=10).status_code


@pytest.fixture
def two_hubs(redis_server: RedisServer, prefix: str, tmp_path: Path) -> Iterator[tuple[HubProcess, HubProcess]]:
    """Two hubs of one deployment, each started in a working directory of its own, sharing HOME."""
    hubs = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            hub = HubProcess(redis_server.url, prefix, env={**home_env(tmp_path / "home"), **ISSUER},
                             cwd=tmp_path / name)
            hubs.append(hub)
            hub.start()
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            hub.stop()


def test_hubs_started_in_different_directories_accept_each_others_tokens(
    two_hubs: tuple[HubProcess, HubProcess], tmp_path: Path
) -> None:
    first, second = two_hubs
    client_id, secret = first.client()
    token = first.token_for(client_id, secret)
    frame = welcome(second, token)
    assert (frame["type"], frame["client_id"]) == ("welcome", client_id)
    admin = first.token_for(*first.client(name="ops", scopes=["admin"]), scope="admin")
    assert admin_clients(second, admin) == 200
    keys = data_dir(tmp_path / "home")
    assert kid_of(token) == load_private_key(keys / "signing-key.pem").kid == published(second)[0]
    assert sorted(os.listdir(keys)) == ["endpoint.key", "signing-key.pem"]
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b").iterdir()), "no key in a cwd"


def test_a_hub_whose_keys_differ_refuses_to_start_naming_both_keys_and_the_setting(
    two_hubs: tuple[HubProcess, HubProcess], redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    shared = data_dir(tmp_path / "home")
    other_home = tmp_path / "other-home"
    other = data_dir(other_home)
    other.mkdir(parents=True)
    (other / "endpoint.key").write_bytes(Fernet.generate_key())
    (other / "signing-key.pem").write_bytes(ECKey.generate_key("P-256", private=True).as_pem(private=True))
    env = command_env(redis_server.url, prefix, other_home)

    refused = rthub(tmp_path / "c", env, "serve", "--port", "1", "--log-format", "text")
    assert refused.returncode != 0
    ours, theirs = (fingerprint((d / "endpoint.key").read_bytes()) for d in (other, shared))
    assert ours in refused.stderr and theirs in refused.stderr, refused.stderr
    assert str(other / "endpoint.key") in refused.stderr and "RTHUB_DATA_DIR" in refused.stderr

    shutil.copy(shared / "endpoint.key", other / "endpoint.key")  # now only the signing key differs
    refused = rthub(tmp_path / "c", env, "serve", "--port", "1", "--log-format", "text")
    assert refused.returncode != 0
    ours, theirs = (load_private_key(d / "signing-key.pem").kid for d in (other, shared))
    assert ours in refused.stderr and theirs in refused.stderr, refused.stderr
    assert "RTHUB_DATA_DIR" in refused.stderr

    empty_home = tmp_path / "empty-home"
    refused = rthub(tmp_path / "c", command_env(redis_server.url, prefix, empty_home), "serve", "--port", "1")
    assert refused.returncode != 0 and "no endpoint key file" in refused.stderr, refused.stderr
    assert not data_dir(empty_home).exists() or not list(data_dir(empty_home).iterdir()), "no key generated"


def test_rotation_run_from_a_third_directory_reaches_every_hub(
    two_hubs: tuple[HubProcess, HubProcess], redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    first, second = two_hubs
    client_id, secret = first.client()
    before = first.token_for(client_id, secret)
    admin_before = first.token_for(*first.client(name="ops", scopes=["admin"]), scope="admin")
    old_kid = kid_of(before)

    rotated = rthub(tmp_path / "c", command_env(redis_server.url, prefix, tmp_path / "home"),
                    "admin", "rotate-signing-key", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = json.loads(rotated.stdout)["kid"]
    assert new_kid != old_kid

    for hub in two_hubs:
        wait_until(lambda hub=hub: published(hub)[:2] == [new_kid, old_kid], 20, "the new key is not published")
        wait_until(lambda hub=hub: kid_of(hub.token_for(client_id, secret)) == new_kid, 20,
                   "the hub does not sign with the new key")
    assert str(data_dir(tmp_path / "home") / "signing-key.pem") in rotated.stderr, "the key file's path is logged"
    assert not list((tmp_path / "c").iterdir()), "nothing written to the working directory"
    for hub in two_hubs:
        assert welcome(hub, before)["type"] == "welcome", "a token signed before the rotation still verifies"
        assert admin_clients(hub, admin_before) == 200
    for signer, verifier in ((first, second), (second, first)):
        assert welcome(verifier, signer.token_for(client_id, secret))["type"] == "welcome"


def test_a_hub_whose_directory_misses_the_rotated_key_says_so_and_keeps_verifying(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    homes = [tmp_path / "home-a", tmp_path / "home-b"]
    first = HubProcess(redis_server.url, prefix, env={**home_env(homes[0]), **ISSUER}, cwd=tmp_path)
    first.start()
    try:
        shutil.copytree(data_dir(homes[0]), data_dir(homes[1]))  # the same keys, copied: not shared
        second = HubProcess(redis_server.url, prefix, env={**home_env(homes[1]), **ISSUER}, cwd=tmp_path)
        second.start()
        try:
            client_id, secret = first.client()
            old_kid = kid_of(first.token_for(client_id, secret))
            rotated = rthub(tmp_path / "c", command_env(redis_server.url, prefix, homes[0]),
                            "admin", "rotate-signing-key", "--json")
            new_kid = json.loads(rotated.stdout)["kid"]

            def readyz() -> dict[str, Any]:
                return dict(httpx.get(f"{second.http}/readyz", timeout=5).json())

            wait_until(lambda: "signing_key" in readyz(), 20, "/readyz does not say the new key is missing")
            detail = readyz()
            assert detail["ready"] is True and new_kid in detail["signing_key"] and old_kid in detail["signing_key"]
            assert str(data_dir(homes[1]) / "signing-key.pem") in detail["signing_key"]
            assert second.metric("rthub_signing_key_missing") == 1 and first.metric("rthub_signing_key_missing") == 0
            assert published(second)[:2] == [new_kid, old_kid]
            assert kid_of(second.token_for(client_id, secret)) == old_kid, "signs with its own, still published"
            assert welcome(second, first.token_for(client_id, secret))["type"] == "welcome", "verifies the new"
            assert welcome(first, second.token_for(client_id, secret))["type"] == "welcome"

            shutil.copy(data_dir(homes[0]) / "signing-key.pem", data_dir(homes[1]) / "signing-key.pem")
            wait_until(lambda: "signing_key" not in readyz(), 20, "the copied key was not taken up")
            assert kid_of(second.token_for(client_id, secret)) == new_kid
            assert second.metric("rthub_signing_key_missing") == 0
        finally:
            second.stop()
    finally:
        first.stop()
