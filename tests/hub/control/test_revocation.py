"""Revocation without gaps. A socket whose handshake raced a change notice, a socket
outliving its token, and a removed scope (`events:read` on sockets, `admin` on the admin API and page)."""

from __future__ import annotations

import asyncio
import time

import httpx
import websockets

from tests.hub.control.test_client_changes import _with_registry
from tests.hubproc import Hub, HubProcess
from tests.servers import RedisServer
from tests.waiting import async_wait_until


async def _handshake(url: str, token: str) -> websockets.ClientConnection | int | None:
    """A socket that got its welcome, or the close code of one refused during the handshake."""
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    try:
        await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed:
        return ws.close_code
    return ws


async def _revoke_during_handshakes(
    hub: Hub, client_id: str, token: str
) -> list[websockets.ClientConnection | int | None]:
    handshakes = [asyncio.create_task(_handshake(hub.ws, token)) for _ in range(40)]
    await asyncio.sleep(0.02)  # pacing: the handshakes get under way, so the revocation races them
    await asyncio.to_thread(_with_registry, hub, lambda registry: registry.revoke(client_id))
    results = await asyncio.gather(*handshakes)
    sockets = [r for r in results if isinstance(r, websockets.ClientConnection)]
    await async_wait_until(lambda: all(ws.close_code is not None for ws in sockets), 10,
                           "a socket outlived the revocation")
    return results


def test_handshakes_racing_a_revocation_never_keep_a_socket(hub: Hub) -> None:
    """40 handshakes in flight when the client is revoked: each is refused or closed, none stays open."""
    for _ in range(3):
        client_id, secret = hub.client()
        results = asyncio.run(_revoke_during_handshakes(hub, client_id, hub.token_for(client_id, secret)))
        still_open = [r for r in results if isinstance(r, websockets.ClientConnection) and r.close_code is None]
        assert not still_open, f"{len(still_open)} socket(s) outlived the revocation"
        codes = {r.close_code if isinstance(r, websockets.ClientConnection) else r for r in results}
        assert codes <= {4403}, codes


def test_a_socket_is_closed_when_its_token_expires(redis_server: RedisServer, prefix: str) -> None:
    hub = HubProcess(redis_server.url, prefix, env={"RTHUB_TOKEN_LIFETIME": "2"})
    hub.start()
    try:
        token = hub.token()

        async def scenario() -> tuple[int | None, str, float]:
            started = time.monotonic()
            ws = await _handshake(hub.ws, token)
            assert isinstance(ws, websockets.ClientConnection)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code, ws.close_reason, time.monotonic() - started

        code, reason, lasted = asyncio.run(scenario())
    finally:
        hub.stop()
    assert code == 4401 and "expired" in reason
    assert lasted < 4, f"the socket outlived its token by {lasted - 2:.1f}s"


def test_removing_events_read_closes_sockets_and_refuses_unexpired_tokens(hub: Hub) -> None:
    client_id, secret = hub.client(scopes=["events:read", "admin"])
    token = hub.token_for(client_id, secret, scope="events:read admin")

    async def scenario() -> tuple[int | None, float, int | None, str]:
        ws = await _handshake(hub.ws, token)
        assert isinstance(ws, websockets.ClientConnection)
        started = time.monotonic()
        await asyncio.to_thread(_with_registry, hub, lambda registry: registry.update(client_id, scopes=["admin"]))
        await asyncio.wait_for(ws.wait_closed(), 2)
        took = time.monotonic() - started
        again = await websockets.connect(hub.ws, additional_headers={"Authorization": f"Bearer {token}"})
        await asyncio.wait_for(again.wait_closed(), 5)
        return ws.close_code, took, again.close_code, again.close_reason

    code, took, again_code, again_reason = asyncio.run(scenario())
    assert code == 4403 and took < 1.5
    assert again_code == 4403 and "events:read" in again_reason, "the token still says events:read; the client does not"


def test_removing_admin_ends_api_tokens_and_page_sessions_at_once(hub: Hub) -> None:
    client_id, secret = hub.client(scopes=["admin"])
    token = hub.token_for(client_id, secret, scope="admin")
    with httpx.Client(base_url=hub.http, timeout=10) as http:
        page = http.get("/admin/")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        signed_in = http.post("/admin/login", data={"csrf": csrf, "client_id": client_id, "client_secret": secret})
        assert signed_in.status_code == 303
        assert 'id="create-client"' in http.get("/admin/").text, "signed in: the client list"
        api = {"Authorization": f"Bearer {token}"}
        assert http.get("/admin/api/clients", headers=api).status_code == 200
        _with_registry(hub, lambda registry: registry.update(client_id, scopes=["events:read"]))
        refused = http.get("/admin/api/clients", headers=api)
        assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
        assert 'name="client_secret"' in http.get("/admin/").text, "the page session ended: sign-in form again"


def test_a_client_without_events_read_cannot_stream_even_with_an_old_token(hub: Hub) -> None:
    client_id, secret = hub.client(scopes=["events:read", "admin"])
    token = hub.token_for(client_id, secret, scope="events:read")
    _with_registry(hub, lambda registry: registry.update(client_id, scopes=["admin"]))

    async def scenario() -> int | websockets.ClientConnection | None:
        return await _handshake(hub.ws, token)

    assert asyncio.run(scenario()) == 4403
