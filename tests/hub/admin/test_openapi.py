"""The admin API's OpenAPI document is generated from the route table and the handlers' models: every
route is in it, a route without a model cannot be served, and every answer of a real hub matches it."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth.keys import SigningKeys
from auth.registry import ClientRegistry
from hub.admin.api import AdminApi, admin_api_routes
from hub.admin.openapi import Undocumented, openapi_document
from hub.config import Settings
from hub.delivery.webhook.health import record_attempt
from tests.authserver import AuthServer, in_loop
from tests.hub.delivery.webhook.helpers import dead_letters_of_one_event


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def route_table(settings: Settings) -> list[Route]:
    redis = aioredis.Redis()  # never connected: the route table is only read
    return admin_api_routes(settings, redis, SigningKeys(settings, redis))  # type: ignore[return-value]


def test_every_route_of_the_table_is_in_the_document_and_no_other(auth_server: AuthServer) -> None:
    document = auth_server.http.get("/admin/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    served = {(route.path, method.lower()) for route in route_table(auth_server.settings)
              for method in route.methods - {"HEAD"}}
    assert documented == served
    for path, item in document["paths"].items():
        for method, described in item.items():
            assert described["responses"], (path, method)
            secured = path != "/openapi.json"
            assert ("security" in described) == secured, (path, method)
            if secured:
                assert {"401", "403"} <= set(described["responses"]), (path, method)
            if "requestBody" in described:
                assert "422" in described["responses"], (path, method)


def test_a_route_without_a_model_cannot_be_documented_or_guarded() -> None:
    settings = Settings()
    routes = route_table(settings)

    async def undocumented(request: Request) -> Response:
        return Response()

    with pytest.raises(Undocumented, match="/extra"):
        openapi_document([*routes, Route("/extra", undocumented, methods=["GET"])], settings)
    redis = aioredis.Redis()
    api = AdminApi(settings, redis, SigningKeys(settings, redis))
    with pytest.raises(Undocumented, match="undocumented"):
        api.guarded(undocumented)


class Checked:
    """Calls the API and checks each answer against the document's schema for its path, method and status."""

    def __init__(self, http: httpx.Client, document: dict[str, Any], token: str) -> None:
        self.http, self.document, self.token = http, document, token
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, method: str, template: str, status: int, token: str | None = "", **kwargs: Any) -> Any:
        path = template.format(**kwargs.pop("params_path", {}))
        headers = bearer(self.token if token == "" else token) if token is not None else {}
        response = self.http.request(method, f"/admin/api{path}", headers=headers, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        answers = self.document["paths"][template][method.lower()]["responses"]
        assert str(status) in answers, f"{method} {template} answered {status}, which the document does not list"
        self.seen.add((template, method.lower(), str(status)))
        content = answers[str(status)].get("content")
        if content is None:
            assert not response.content, (method, path, response.content)
            return None
        schema = {**content["application/json"]["schema"], "components": self.document["components"]}
        body = response.json()
        errors = [error.message for error in jsonschema_rs.validator_for(schema).iter_errors(body)]
        assert not errors, (method, path, status, body, errors)
        return body


def test_every_answer_of_a_real_hub_matches_the_document(auth_server: AuthServer) -> None:
    http, settings = auth_server.http, auth_server.settings
    document = http.get("/admin/api/openapi.json").json()
    admin_id, admin_secret = auth_server.create(name="admin", type="other", scopes=["admin"])
    call = Checked(http, document, auth_server.token(admin_id, admin_secret))
    consumer = auth_server.token(*auth_server.create())
    call("GET", "/openapi.json", 200, token=None)

    one = {"name": "Tutor", "type": "adaptive", "translator": "xapi", "grant": [{"orgs": ["MITx"]}],
           "delivery": "webhook", "webhook_url": "https://8.8.8.8/in"}
    created = call("POST", "/clients", 201, json=one)
    client = {"params_path": {"client_id": created["client_id"]}}
    call("POST", "/clients", 422, json={**one, "translator": "cmi5"})
    call("POST", "/clients", 400, content=b"{nope")
    call("GET", "/clients", 401, token=None)
    call("GET", "/clients", 403, token=consumer)
    call("GET", "/clients/{client_id}", 200, **client)
    call("GET", "/clients/{client_id}", 404, params_path={"client_id": "cl_missing"})
    call("PATCH", "/clients/{client_id}", 200, json={"scopes": "events:read", "webhook_batch_max": 5}, **client)
    call("PATCH", "/clients/{client_id}", 422, json={"delivery": "pigeon"}, **client)
    call("POST", "/clients/{client_id}/rotate-secret", 200, **client)

    lrs = call("POST", "/clients", 201, json={
        "name": "LRS", "type": "university", "translator": "xapi", "delivery": "lrs",
        "endpoint_url": "https://8.8.8.8/xAPI/", "endpoint_username": "u", "endpoint_password": "p",
    })

    async def pause(registry: ClientRegistry) -> None:
        await registry.pause_endpoint(lrs["client_id"], "HTTP 401: bad credentials")
        await record_attempt(registry.redis, settings, lrs["client_id"], 401, 0.05, "HTTP 401: bad credentials")
        await record_attempt(registry.redis, settings, lrs["client_id"], None, 10.0, "timeout after 10s")

    in_loop(settings, pause)
    lrs_path = {"params_path": {"client_id": lrs["client_id"]}}
    assert call("GET", "/clients/{client_id}", 200, **lrs_path)["delivery_status"] == "paused"
    assert len(call("GET", "/clients/{client_id}/deliveries", 200, **lrs_path)["deliveries"]) == 2
    call("GET", "/clients/{client_id}/deliveries", 422, params={"limit": "0"}, **lrs_path)
    call("POST", "/clients/{client_id}/endpoint-credential", 200, json={"endpoint_password": "q"}, **lrs_path)
    call("POST", "/clients/{client_id}/endpoint-credential", 422, json={"colour": "red"}, **lrs_path)

    refused = in_loop(settings, lambda registry: dead_letters_of_one_event(
        settings.redis_url, settings.redis_prefix, "http://127.0.0.1:9/in"
    ))
    listed = call("GET", "/deadletters", 200)["deadletters"]
    assert [record["id"] for record in listed] == [record["id"] for record in refused]
    assert any(view["delivery_health"] for view in call("GET", "/clients", 200)["clients"])
    call("GET", "/deadletters", 422, params={"limit": "many"})
    call("POST", "/deadletters/replay", 200, json={"ids": [listed[0]["id"]]})
    call("POST", "/deadletters/replay", 422, json={"everything": True})
    call("POST", "/deadletters/replay", 200, json={"client_id": "acme", "enable": True})
    call("POST", "/deadletters/replay", 422, json={"enable": 1})
    call("GET", "/connections", 200)
    call("POST", "/clients/{client_id}/retry-now", 200, **client)
    call("POST", "/clients/{client_id}/retry-now", 404, params_path={"client_id": "cl_missing"})
    call("POST", "/clients/{client_id}/webhooks/disable", 200, **client)
    call("POST", "/clients/{client_id}/webhooks/enable", 200, **client)
    call("POST", "/clients/{client_id}/revoke", 200, **client)
    call("POST", "/clients/{client_id}/revoke", 409, params_path={"client_id": admin_id})
    call("DELETE", "/clients/{client_id}", 409, params_path={"client_id": admin_id})
    call("DELETE", "/clients/{client_id}", 204, **client)
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {(path, method) for path, method, _ in call.seen} == documented
