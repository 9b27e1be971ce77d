"""Admin REST API over real HTTP: CRUD, secrets, connections, auth failures and field-named 422s."""

from __future__ import annotations

from auth.endpoint_credentials import EndpointCipher
from auth.registry import ClientRegistry
from hub.control.presence import Presence
from hub.ingest.redis import RedisBroker
from rthub_lms.keys import key_material
from tests.authserver import AuthServer, in_loop


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_crud_rotate_revoke_and_connections(auth_server: AuthServer) -> None:
    http, headers = auth_server.http, bearer(auth_server.admin_token())
    created = http.post(
        "/admin/api/clients",
        headers=headers,
        json={"name": "Tutor", "type": "adaptive", "translator": "caliper", "grant": [{"orgs": ["MITx"]}]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert body["status"] == "active" and body["scopes"] == ["events:read"]
    assert "secret_hash" not in body
    assert auth_server.token(client_id, secret)

    shown = http.get(f"/admin/api/clients/{client_id}", headers=headers).json()
    assert shown["name"] == "Tutor" and "client_secret" not in shown and shown["live_connections"] == 0

    patched = http.patch(f"/admin/api/clients/{client_id}", headers=headers, json={"translator": "xapi", "grant": []})
    assert patched.status_code == 200
    assert (patched.json()["translator"], patched.json()["grant"]) == ("xapi", [])

    async def two_sockets(registry: ClientRegistry) -> None:
        tip = RedisBroker(registry.redis, auth_server.settings).tip
        hub = Presence(registry.redis, auth_server.settings, tip=tip, instance="hub-1")
        await hub.connected(client_id)
        await hub.connected(client_id)
        await hub.refresh()

    in_loop(auth_server.settings, two_sockets)
    listed = http.get("/admin/api/clients", headers=headers).json()["clients"]
    assert {c["client_id"]: c["live_connections"] for c in listed}[client_id] == 2
    assert http.get("/admin/api/connections", headers=headers).json() == {"connections": {client_id: 2}}

    rotated = http.post(f"/admin/api/clients/{client_id}/rotate-secret", headers=headers).json()
    assert rotated["client_secret"] != secret and rotated["previous_secret_expires"]

    revoked = http.post(f"/admin/api/clients/{client_id}/revoke", headers=headers)
    assert revoked.json()["status"] == "revoked"

    assert http.delete(f"/admin/api/clients/{client_id}", headers=headers).status_code == 204
    missing = http.get(f"/admin/api/clients/{client_id}", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_unauthenticated_and_unscoped_requests_are_refused(auth_server: AuthServer) -> None:
    http = auth_server.http
    none = http.get("/admin/api/clients")
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/admin/api/clients", headers=bearer("garbage")).status_code == 401

    client_id, secret = auth_server.create()
    consumer = http.get("/admin/api/clients", headers=bearer(auth_server.token(client_id, secret)))
    assert consumer.status_code == 403
    assert consumer.json()["error"] == "insufficient_scope"

    admin_id, admin_secret = auth_server.create(name="admin", type="other", scopes=["admin"])
    token = auth_server.token(admin_id, admin_secret)
    assert http.get("/admin/api/clients", headers=bearer(token)).status_code == 200
    assert http.post(f"/admin/api/clients/{admin_id}/revoke", headers=bearer(token)).status_code == 409, "not itself"
    other = auth_server.admin_token()
    assert http.post(f"/admin/api/clients/{admin_id}/revoke", headers=bearer(other)).status_code == 200
    assert http.get("/admin/api/clients", headers=bearer(token)).status_code == 403


def test_invalid_input_is_422_with_the_field_named(auth_server: AuthServer) -> None:
    http, headers = auth_server.http, bearer(auth_server.admin_token())
    base = {"name": "n", "type": "other", "translator": "xapi"}
    cases = [
        ({**base, "translator": "cmi5"}, "translator"),
        ({**base, "delivery": "webhook", "webhook_url": "http//broken"}, "webhook_url"),
        ({**base, "grant": [{"orgs": ["MITx"]}, {"courses": [1, 2]}]}, "grant[1].courses[0]"),
        ({**base, "grant": "nope"}, "grant"),
        ({"name": "n", "type": "other"}, "translator"),
    ]
    for body, field in cases:
        response = http.post("/admin/api/clients", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field
        assert field in response.json()["message"]
    assert http.post("/admin/api/clients", headers=headers, content=b"{nope").status_code == 400
    client_id, _ = auth_server.create()
    patch = http.patch(f"/admin/api/clients/{client_id}", headers=headers, json={"delivery": "carrier-pigeon"})
    assert (patch.status_code, patch.json()["field"]) == (422, "delivery")


def test_openapi_document_describes_the_api(auth_server: AuthServer) -> None:
    document = auth_server.http.get("/admin/api/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {
        "/clients",
        "/clients/{client_id}",
        "/clients/{client_id}/rotate-secret",
        "/clients/{client_id}/revoke",
        "/connections",
    } <= set(document["paths"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_url_reaching_a_private_address_is_422_naming_the_address(auth_server: AuthServer) -> None:
    http, headers = auth_server.http, bearer(auth_server.admin_token())
    hook = {"name": "n", "type": "other", "translator": "xapi", "delivery": "webhook"}
    lrs = {"name": "n", "type": "other", "translator": "xapi", "delivery": "lrs", "endpoint_token": "t"}
    for body, field, address in [
        ({**hook, "webhook_url": "http://0x7f000001:8080/in"}, "webhook_url", "127.0.0.1"),
        ({**hook, "webhook_url": "http://[::127.0.0.1]/in"}, "webhook_url", "::7f00:1"),
        ({**hook, "webhook_url": "http://localhost./in"}, "webhook_url", "127.0.0.1"),
        ({**lrs, "endpoint_url": "https://2130706433/xAPI/"}, "endpoint_url", "127.0.0.1"),
        ({**lrs, "endpoint_url": "https://0/xAPI/"}, "endpoint_url", "0.0.0.0"),
    ]:
        response = http.post("/admin/api/clients", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field and address in response.json()["message"], response.text
    created = http.post("/admin/api/clients", headers=headers, json={**hook, "webhook_url": "https://8.8.8.8/in"})
    assert created.status_code == 201, created.text
    patch = http.patch(
        f"/admin/api/clients/{created.json()['client_id']}", headers=headers, json={"webhook_url": "http://127.1/in"}
    )
    assert patch.status_code == 422 and "127.0.0.1" in patch.json()["message"], patch.text


def test_a_grant_missing_known_events_is_saved_with_warnings(auth_server: AuthServer) -> None:
    http, headers = auth_server.http, bearer(auth_server.admin_token())
    flagship = {"courses": ["course-v1:MITx+6.002x+*"], "event_types": ["edx.video.*", "problem_check"]}
    created = http.post(
        "/admin/api/clients", headers=headers,
        json={"name": "Tutor", "type": "adaptive", "translator": "xapi", "grant": [flagship]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["grant"] == [flagship], "saved as given: a warning is never a refusal"
    (warning,) = body["warnings"]
    assert warning.startswith("grant[0].event_types: ") and "play_video" in warning and "pause_video" in warning

    client_id = body["client_id"]
    typo = http.patch(
        f"/admin/api/clients/{client_id}", headers=headers, json={"grant": [{"event_types": ["edx.problem_check"]}]}
    )
    assert typo.status_code == 200
    assert typo.json()["grant"] == [{"event_types": ["edx.problem_check"]}]
    (warning,) = typo.json()["warnings"]
    assert warning.startswith("grant[0].event_types[0]: 'edx.problem_check' matches no event name")
    assert "did you mean problem_check" in warning

    fixed = http.patch(
        f"/admin/api/clients/{client_id}", headers=headers,
        json={"grant": [{"event_types": ["*video*", "*_transcript", "problem_check"]}]},
    )
    assert (fixed.status_code, fixed.json()["warnings"]) == (200, [])
    renamed = http.patch(f"/admin/api/clients/{client_id}", headers=headers, json={"name": "Tutor 2"})
    assert renamed.json()["warnings"] == []
    plain = http.post("/admin/api/clients", headers=headers, json={"name": "n", "type": "other", "translator": "xapi"})
    assert plain.json()["warnings"] == []

    document = http.get("/admin/api/openapi.json").json()
    for path, method, status in (("/clients", "post", "201"), ("/clients/{client_id}", "patch", "200")):
        schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        model = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        assert "warnings" in model["properties"] and "warnings" in model["required"], (path, method)


def test_a_credential_is_not_written_under_a_key_the_registry_does_not_record(auth_server: AuthServer) -> None:
    """The registry's endpoint key changed under a running hub (say, a registry imported from another
    deployment): credential writes answer 500 `key_mismatch`, naming both keys, and store nothing."""
    http, headers = auth_server.http, bearer(auth_server.admin_token())
    settings = auth_server.settings

    async def another_key_recorded(registry: ClientRegistry) -> None:
        await registry.redis.hset(key_material(settings), "endpoint", "0123456789abcdef")

    in_loop(settings, another_key_recorded)
    before = {c["client_id"] for c in http.get("/admin/api/clients", headers=headers).json()["clients"]}
    refused = http.post("/admin/api/clients", headers=headers, json={
        "name": "LRS", "type": "enterprise", "translator": "xapi", "delivery": "lrs",
        "endpoint_url": "https://lrs.example/xAPI/", "endpoint_token": "t0ken",
    })
    assert refused.status_code == 500 and refused.json()["error"] == "key_mismatch"
    ours = EndpointCipher(settings.endpoint_key_path).fingerprint
    assert "0123456789abcdef" in refused.json()["message"] and ours in refused.json()["message"]
    assert "RTHUB_DATA_DIR" in refused.json()["message"]
    after = {c["client_id"] for c in http.get("/admin/api/clients", headers=headers).json()["clients"]}
    assert after == before
