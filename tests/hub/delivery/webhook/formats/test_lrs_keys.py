"""An LRS client created by `rthub clients create` in another working directory (as under Tutor, in a
throw-away job container): refused, naming both keys and the setting, unless it has the hub's data
directory; with it, its events really reach the LRS (Ralph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from auth.keyring import fingerprint
from tests.hub.delivery.webhook.formats.helpers import HUB_ENV, publish_twice, rendered, wait_for
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.hubproc import HubProcess
from tests.keyfiles import command_env, data_dir, home_env, rthub
from tests.servers import RedisServer


@pytest.mark.hub_process
def test_lrs_client_from_another_directory_is_refused_or_uses_the_hubs_key(
    redis_server: RedisServer, prefix: str, tmp_path: Path, ralph: RalphServer
) -> None:
    hub = HubProcess(redis_server.url, prefix, env={**home_env(tmp_path / "home"), **HUB_ENV}, cwd=tmp_path)
    hub.start()
    try:
        create = ("clients", "create", "--name", "LRS", "--type", "enterprise", "--translator", "xapi",
                  "--delivery", "lrs", "--endpoint-url", ralph.endpoint, "--endpoint-username", ralph.username,
                  "--endpoint-password", ralph.password, "--grant", "{}", "--json")
        job_keys = data_dir(tmp_path / "job-home")
        env = {**command_env(redis_server.url, prefix, tmp_path / "job-home"), **HUB_ENV}
        refused = rthub(tmp_path / "job", env, *create)
        assert refused.returncode == 2
        assert f"no endpoint key file at {job_keys / 'endpoint.key'}" in refused.stderr
        assert "RTHUB_DATA_DIR" in refused.stderr
        assert not job_keys.exists(), "no key is generated while the registry records one"

        job_keys.mkdir(parents=True)
        (job_keys / "endpoint.key").write_bytes(Fernet.generate_key())
        refused = rthub(tmp_path / "job", env, *create)
        hub_key = data_dir(tmp_path / "home") / "endpoint.key"
        assert refused.returncode == 2
        for key in (job_keys / "endpoint.key", hub_key):
            assert fingerprint(key.read_bytes()) in refused.stderr, refused.stderr
        assert "RTHUB_DATA_DIR" in refused.stderr
        listed = rthub(tmp_path / "job", env, "clients", "list", "--json")
        assert json.loads(listed.stdout)["clients"] == [], "a refused command writes nothing"

        created = rthub(tmp_path / "job", {**env, "RTHUB_DATA_DIR": str(hub_key.parent)}, *create)
        assert created.returncode == 0, created.stderr
        assert f"endpoint key loaded from {hub_key}" in created.stderr
        entries = publish_twice(hub, 10, seed=5)
        expected = sorted(statement["id"] for statement in rendered(hub, entries, "xapi", "enterprise"))
        wait_for(lambda: sorted({s["id"] for s in ralph.statements()}) == expected, 60, "the statements in the LRS")
    finally:
        hub.stop()
