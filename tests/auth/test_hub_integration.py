"""The real hub app, with `JwtAuthenticator` and `auth_routes` wired in by the app factory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hub.app import create_app
from tests.authserver import AuthServer, serve
from tests.servers import free_port


@pytest.fixture
def hub_url(auth_server: AuthServer) -> Iterator[str]:
    port = free_port()
    settings = auth_server.settings.with_overrides(issuer=f"http://127.0.0.1:{port}")
    server, thread = serve(create_app(settings), port)
    yield settings.issuer
    server.should_exit = True
    thread.join(timeout=10)


def test_token_from_the_hub_opens_the_stream_and_refusals_use_contract_codes(
    auth_server: AuthServer, hub_url: str
) -> None:
    client_id, secret = auth_server.create(translator="caliper")
    token = httpx.post(
        f"{hub_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).json()["access_token"]
    events = hub_url.replace("http://", "ws://") + "/v1/events"
    with connect(events, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        welcome = json.loads(ws.recv(timeout=5))
    assert (welcome["type"], welcome["client_id"], welcome["translator"]) == ("welcome", client_id, "caliper")

    with (
        connect(events, additional_headers={"Authorization": "Bearer forged"}) as ws,
        pytest.raises(ConnectionClosed) as bad,
    ):
        ws.recv(timeout=5)
    assert bad.value.rcvd is not None and bad.value.rcvd.code == 4401

    headers = {"Authorization": f"Bearer {auth_server.admin_token()}"}
    assert auth_server.http.post(f"/admin/api/clients/{client_id}/revoke", headers=headers).status_code == 200
    with (
        connect(events, additional_headers={"Authorization": f"Bearer {token}"}) as ws,
        pytest.raises(ConnectionClosed) as gone,
    ):
        ws.recv(timeout=5)
    assert gone.value.rcvd is not None and gone.value.rcvd.code == 4403
