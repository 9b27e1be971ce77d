"""The AsyncAPI document at `/v1/asyncapi.json`: valid for the AsyncAPI project's own parser, generated
from the code (close codes, frame types), and true of what a real hub sends on a socket and to a webhook."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import orjson
import pytest
import redis
import websockets

from auth.closecodes import MEANINGS, CloseCode
from hub.config import Settings
from hub.delivery.asyncapi import asyncapi_document
from hub.dev.simulator import SimulatedLMS
from rthub_lms.backend import StreamWriter
from rthub_lms.events import normalise
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import Hub, InProcessHub
from tests.npm import npm_packages
from tests.servers import RedisServer
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
CHECK = Path(__file__).with_name("asyncapi_check.cjs")
PARSER = ("@asyncapi/parser@3.6.6",)
# Where frames are built: any `"type": "<name>"` there is a frame someone receives.
FRAME_CODE = ("hub/fanout", "hub/delivery")
DOCUMENT_CODE = ROOT / "hub/delivery/asyncapi.py"
TYPE_IN_TEXT = re.compile(r'"type"\s*:\s*"([A-Za-z_]+)"')


def served(hub: Hub) -> dict[str, Any]:
    response = httpx.get(f"{hub.http}/v1/asyncapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def payload_validator(document: dict[str, Any], message: str) -> Any:
    """A validator for one message's payload, its `$ref`s resolved inside the document."""
    schema = {"$ref": f"#/components/messages/{message}/payload", "components": document["components"]}
    return jsonschema_rs.validator_for(schema)


def headers_validator(document: dict[str, Any], message: str) -> Any:
    schema = {"$ref": f"#/components/messages/{message}/headers", "components": document["components"]}
    return jsonschema_rs.validator_for(schema)


def frame_types_documented(document: dict[str, Any]) -> set[str]:
    """The `type` of every message payload (or of its items), as the document states them."""
    schemas = document["components"]["schemas"]
    found = set()
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        target = schemas.get(payload.get("$ref", "").rsplit("/", 1)[-1], payload)
        constant = target.get("properties", {}).get("type", {}).get("const")
        if constant is not None:
            found.add(constant)
    return found


@pytest.mark.peers
@pytest.mark.timeout(600)  # a first run installs the parser from the npm registry
def test_the_served_document_passes_the_asyncapi_parser(hub: Hub, tmp_path: Path) -> None:
    modules = npm_packages("asyncapi-parser", PARSER)
    document = served(hub)
    (tmp_path / "asyncapi.json").write_text(json.dumps(document))
    done = subprocess.run(
        ["node", str(CHECK), str(tmp_path / "asyncapi.json")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and not [d for d in report["diagnostics"] if d["severity"] == "error"], report
    summary = report["summary"]
    assert summary["version"] == "3.0.0"
    assert {"events", "webhook", "lrsStatements", "caliperEnvelopes"} <= set(summary["channels"])
    assert {"sendWelcome", "sendEvent", "sendGap", "receiveSubscribe", "deliverWebhook", "deliverStatements",
            "deliverCaliperEnvelope"} <= set(summary["operations"])


@pytest.mark.peers
@pytest.mark.timeout(600)
def test_the_parser_check_fails_a_broken_document(tmp_path: Path) -> None:
    """The check above would catch a bad document: an operation with an action AsyncAPI does not have."""
    document = asyncapi_document(Settings())
    document["operations"]["sendWelcome"]["action"] = "shout"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    modules = npm_packages("asyncapi-parser", PARSER)
    done = subprocess.run(
        ["node", str(CHECK), str(tmp_path / "bad.json")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert any(d["severity"] == "error" and "action" in d["message"] for d in json.loads(done.stdout)["diagnostics"])


def test_the_close_codes_are_the_close_code_enum() -> None:
    listed = asyncapi_document(Settings())["channels"]["events"]["x-close-codes"]
    assert [(entry["code"], entry["name"], entry["meaning"]) for entry in listed] == [
        (int(code), code.name, MEANINGS[code]) for code in CloseCode
    ]


def _is_type_lookup(node: ast.AST) -> bool:
    """`x["type"]` or `x.get("type")`."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "type"
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "type")


def _types_built_in(path: Path) -> set[str]:
    """Frame types a module builds or reads: `{"type": "<name>", ...}` literals, JSON text holding one,
    and comparisons of a `type` with a name (ASGI's dotted message types are not frames)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            sides = (node.left, node.comparators[0])
            for lookup, other in (sides, sides[::-1]):
                if _is_type_lookup(lookup) and isinstance(other, ast.Constant) and "." not in str(other.value):
                    found.add(other.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Constant):
                    found.add(value.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(TYPE_IN_TEXT.findall(node.value))
    return found


def test_every_frame_type_the_code_builds_is_documented_and_no_other() -> None:
    modules = [path for folder in FRAME_CODE for path in (ROOT / folder).rglob("*.py") if path != DOCUMENT_CODE]
    built = {name for path in modules for name in _types_built_in(path)}
    document = asyncapi_document(Settings())
    assert built == frame_types_documented(document)
    events = document["channels"]["events"]["messages"]
    assert set(events) == {"welcome", "event", "gap", "subscribe"}
    sent = {op["messages"][0]["$ref"].rsplit("/", 1)[-1]: op["action"]
            for op in document["operations"].values() if op["channel"]["$ref"] == "#/channels/events"}
    assert sent == {"welcome": "send", "event": "send", "gap": "send", "subscribe": "receive"}


def _publish(hub: Hub, count: int) -> list[str]:
    settings = Settings.from_env(redis_url=hub.redis_url, redis_prefix=hub.prefix)
    lms = SimulatedLMS(seed=41)
    return StreamWriter(redis.Redis.from_url(hub.redis_url), settings).write_many(
        [normalise(lms.next_event()) for _ in range(count)]
    )


def test_frames_from_a_real_socket_match_their_messages(hub: Hub) -> None:
    """welcome, gap (resuming from before the stream's first entry) and events, each valid for its message;
    a subscribe frame the hub accepts is valid for its message too."""
    document = served(hub)
    cursors = _publish(hub, 3)
    token = hub.token()

    async def frames() -> list[dict[str, Any]]:
        url = f"{hub.ws}?resume_from=0-1"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            received = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2 + len(cursors))]
            await ws.send(orjson.dumps({"type": "subscribe", "filter": {"orgs": ["*"]}, "resume_from": cursors[-1]}))
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            return received

    received = asyncio.run(frames())
    assert [frame["type"] for frame in received] == ["welcome", "gap", "event", "event", "event"]
    for frame in received:
        errors = [error.message for error in payload_validator(document, frame["type"]).iter_errors(frame)]
        assert not errors, (frame, errors)
    subscribe = {"type": "subscribe", "filter": {"orgs": ["*"]}, "resume_from": cursors[-1]}
    assert payload_validator(document, "subscribe").is_valid(subscribe)
    assert not payload_validator(document, "welcome").is_valid({**received[0], "extra": 1})


HUB_ENV = {"RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", "RTHUB_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2"}


@pytest.fixture
def webhook_hub(redis_server: RedisServer, prefix: str) -> Iterator[Hub]:
    started = InProcessHub(redis_server.url, prefix, env=HUB_ENV)
    started.start()
    yield started
    started.stop()


def test_webhook_requests_match_their_messages(webhook_hub: Hub) -> None:
    """A real delivery, one event per POST and batched: the body and the headers as documented."""
    document = served(webhook_hub)
    with Receiver() as single, Receiver() as batched:
        webhook_hub.client(delivery="webhook", webhook_url=single.url)
        webhook_hub.client(delivery="webhook", webhook_url=batched.url, webhook_batch_max=10,
                           webhook_batch_wait=0.5)
        _publish(webhook_hub, 3)
        wait_until(lambda: len(single.requests) >= 3 and batched.requests, 30, "no webhook deliveries")
        checks = [(request, "webhookEvent") for request in single.requests]
        checks += [(request, "webhookBatch") for request in batched.requests]
        for request, message in checks:
            body = request.json
            errors = [error.message for error in payload_validator(document, message).iter_errors(body)]
            errors += [error.message for error in headers_validator(document, message).iter_errors(request.headers)]
            assert not errors, (message, body, request.headers, errors)


def test_lrs_and_caliper_endpoint_requests_match_their_messages(webhook_hub: Hub) -> None:
    """Real deliveries to an LRS and to a Caliper endpoint (loopback receivers answering 200): each POST's
    body and headers as the `statements` and `envelope` messages say, to the paths the channels name."""
    document = served(webhook_hub)
    with Receiver() as lrs, Receiver() as caliper:
        webhook_hub.client(delivery="lrs", endpoint_url=lrs.url + "/xAPI/", endpoint_username="rthub",
                           endpoint_password="lrs-password", webhook_batch_max=10, webhook_batch_wait=0.2)
        webhook_hub.client(delivery="caliper-endpoint", translator="caliper", endpoint_url=caliper.url,
                           endpoint_token="caliper-key", webhook_batch_max=10, webhook_batch_wait=0.2)
        _publish(webhook_hub, 5)
        wait_until(lambda: lrs.requests and caliper.requests, 30, "no LRS or Caliper deliveries")
        checks = [(request, "statements") for request in lrs.requests]
        checks += [(request, "envelope") for request in caliper.requests]
        for request, message in checks:
            errors = [error.message for error in payload_validator(document, message).iter_errors(request.json)]
            errors += [error.message for error in headers_validator(document, message).iter_errors(request.headers)]
            assert not errors, (message, request.json, request.headers, errors)
    assert all(request.path == "/hook/xAPI/statements" for request in lrs.requests)
    assert all(request.headers["authorization"].startswith("Basic ") for request in lrs.requests)
    assert all(request.headers["authorization"] == "Bearer caliper-key" for request in caliper.requests)


def test_each_endpoint_message_names_the_credential_schemes_its_delivery_takes() -> None:
    """An LRS takes a user and password (Basic) or a token (Bearer); a Caliper endpoint its API key as a
    bearer token only, so the `envelope` message refuses a Basic credential."""
    document = asyncapi_document(Settings())
    basic = {"authorization": "Basic cnRodWI6eA==", "content-type": "application/json"}
    bearer = {**basic, "authorization": "Bearer key"}

    def authorization_errors(message: str, headers: dict[str, str]) -> list[str]:
        return [error.message for error in headers_validator(document, message).iter_errors(headers)
                if "authorization" in str(error.instance_path) or "Basic" in error.message]

    assert not authorization_errors("statements", basic)
    assert not authorization_errors("statements", bearer)
    assert not authorization_errors("envelope", bearer)
    assert authorization_errors("envelope", basic)
