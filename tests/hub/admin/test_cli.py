"""`rthub clients ...` / `rthub admin bootstrap` as real subprocesses against the real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub.config import Settings
from tests import ROOT
from tests.authserver import AuthServer
from tests.waiting import wait_until


def rthub(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTHUB_REDIS_URL": "redis://127.0.0.1:1/0", "RTHUB_REDIS_PREFIX": "wrong:"}
    argv = [
        sys.executable,
        "-m",
        "hub.cli",
        *args,
        "--redis-url",
        settings.redis_url,
        "--redis-prefix",
        settings.redis_prefix,
    ]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


@pytest.mark.slow
def test_create_list_show_update_rotate_revoke(auth_server: AuthServer) -> None:
    settings = auth_server.settings
    grant = '{"courses": ["course-v1:MITx+6.002x+*"], "event_types": ["*video*", "*_transcript", "problem_check"]}'
    created = rthub(
        settings,
        "clients",
        "create",
        "--name",
        "Tutor",
        "--type",
        "adaptive",
        "--translator",
        "xapi",
        "--grant",
        grant,
        "--grant",
        '{"orgs": ["HarvardX"]}',
        "--json",
    )
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    client_id, secret = body["client_id"], body["client_secret"]
    assert body["grant"] == [json.loads(grant), {"orgs": ["HarvardX"]}]
    assert auth_server.token(client_id, secret)  # the CLI's client works at the token endpoint

    plain = rthub(settings, "clients", "create", "--name", "Uni", "--type", "university", "--translator", "caliper")
    assert plain.returncode == 0
    assert plain.stdout.startswith("client_id: cl_") and "client_secret: " in plain.stdout

    listed = json.loads(rthub(settings, "clients", "list", "--json").stdout)["clients"]
    assert {c["name"] for c in listed} == {"Tutor", "Uni"}
    table = rthub(settings, "clients", "list").stdout
    assert "Tutor" in table and "live_connections" in table

    shown = json.loads(rthub(settings, "clients", "show", client_id, "--json").stdout)
    assert shown["translator"] == "xapi" and "client_secret" not in shown

    updated = rthub(settings, "clients", "update", client_id, "--translator", "caliper", "--clear-grant", "--json")
    assert updated.returncode == 0, updated.stderr
    assert (json.loads(updated.stdout)["translator"], json.loads(updated.stdout)["grant"]) == ("caliper", [])

    rotated = json.loads(rthub(settings, "clients", "rotate-secret", client_id, "--json").stdout)
    assert rotated["client_secret"] != secret
    assert auth_server.token(client_id, rotated["client_secret"])

    revoked = rthub(settings, "clients", "revoke", client_id, "--json")
    assert json.loads(revoked.stdout)["status"] == "revoked"
    response = auth_server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, rotated["client_secret"])
    )
    assert response.status_code == 401


def test_admin_bootstrap_gives_a_working_admin(auth_server: AuthServer) -> None:
    result = rthub(auth_server.settings, "admin", "bootstrap", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["scopes"] == ["admin"]
    token = auth_server.token(body["client_id"], body["client_secret"])
    assert auth_server.http.get("/admin/api/clients", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            [
                "clients",
                "create",
                "--name",
                "x",
                "--type",
                "adaptive",
                "--translator",
                "xapi",
                "--grant",
                "{bad",
            ],
            "grant",
        ),
        (
            [
                "clients",
                "create",
                "--name",
                "x",
                "--type",
                "adaptive",
                "--translator",
                "xapi",
                "--delivery",
                "webhook",
            ],
            "webhook_url",
        ),
        (
            [
                "clients",
                "create",
                "--name",
                "x",
                "--type",
                "adaptive",
                "--translator",
                "xapi",
                "--webhook-url",
                "nope",
            ],
            "webhook_url",
        ),
        (["clients", "create", "--name", "x", "--type", "robot", "--translator", "xapi"], "--type"),
        (["clients", "update", "cl_x"], "nothing to change"),
    ],
)
def test_bad_input_exits_2_with_a_message(auth_server: AuthServer, args: list[str], needle: str) -> None:
    result = rthub(auth_server.settings, *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stdout == ""


def test_a_url_reaching_a_private_address_exits_2_naming_the_address(auth_server: AuthServer) -> None:
    create = ["clients", "create", "--name", "x", "--type", "other", "--translator", "xapi", "--delivery", "webhook"]
    refused = rthub(auth_server.settings, *create, "--webhook-url", "http://0177.0.0.1:8080/in")
    assert refused.returncode == 2 and "webhook_url" in refused.stderr and "127.0.0.1" in refused.stderr
    created = rthub(auth_server.settings, *create, "--webhook-url", "https://8.8.8.8/in", "--json")
    assert created.returncode == 0, created.stderr
    client_id = json.loads(created.stdout)["client_id"]
    update = rthub(auth_server.settings, "clients", "update", client_id, "--webhook-url", "http://[64:ff9b::7f00:1]/")
    assert update.returncode == 2 and "64:ff9b::7f00:1" in update.stderr, update.stderr


def test_unknown_client_exits_1(auth_server: AuthServer) -> None:
    result = rthub(auth_server.settings, "clients", "show", "cl_nobody")
    assert result.returncode == 1
    assert "cl_nobody" in result.stderr


def test_rotate_signing_key_keeps_old_key_published(auth_server: AuthServer) -> None:
    before = {key["kid"] for key in auth_server.http.get("/.well-known/jwks.json").json()["keys"]}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "admin",
            "rotate-signing-key",
            "--redis-url",
            auth_server.settings.redis_url,
            "--redis-prefix",
            auth_server.settings.redis_prefix,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["signing_key_file"] == auth_server.settings.signing_key_path
    new_kid = json.loads(result.stdout)["kid"]

    def published() -> list[str]:
        return [key["kid"] for key in auth_server.http.get("/.well-known/jwks.json").json()["keys"]]

    wait_until(lambda: published()[0] == new_kid, 20, "the auth server never published the new key first")
    after = published()
    assert after[0] == new_kid and before <= set(after)


@pytest.mark.slow
def test_a_grant_missing_known_events_warns_and_strict_refuses(auth_server: AuthServer) -> None:
    settings = auth_server.settings
    create = ["clients", "create", "--name", "Tutor", "--type", "adaptive", "--translator", "xapi", "--json"]
    flagship = '{"courses": ["course-v1:MITx+6.002x+*"], "event_types": ["edx.video.*", "problem_check"]}'

    refused = rthub(settings, *create, "--grant", flagship, "--strict")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "rthub: warning: grant[0].event_types: " in refused.stderr and "play_video" in refused.stderr
    assert "--strict: nothing written" in refused.stderr
    listed = rthub(settings, "clients", "list", "--json")
    assert "Tutor" not in [c["name"] for c in json.loads(listed.stdout)["clients"]], "nothing written"

    warned = rthub(settings, *create, "--grant", flagship)
    assert warned.returncode == 0, warned.stderr
    assert "rthub: warning: grant[0].event_types: " in warned.stderr and "play_video" in warned.stderr
    client = json.loads(warned.stdout)
    assert client["grant"] == [json.loads(flagship)]

    typo = rthub(settings, "clients", "update", client["client_id"], "--grant", '{"event_types": ["showanswers"]}',
                 "--strict")
    assert typo.returncode == 2
    assert "'showanswers' matches no event name rthub translates; did you mean showanswer" in typo.stderr
    shown = json.loads(rthub(settings, "clients", "show", client["client_id"], "--json").stdout)
    assert shown["grant"] == [json.loads(flagship)], "--strict wrote nothing"

    fixed = rthub(settings, "clients", "update", client["client_id"], "--strict",
                  "--grant", '{"event_types": ["*video*", "*_transcript", "problem_check"]}')
    assert fixed.returncode == 0 and "warning" not in fixed.stderr, fixed.stderr
