"""Hostile clients: random WebSocket frames, and schemathesis against the admin API of a real hub."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hubproc import HubProcess
from tests.servers import RedisServer

ACCEPTED_CLOSES = {1003, 1008, 1009}
# No 5xx, and every answer's status, content type and body as the generated OpenAPI document says.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"

cursors = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{0,25}(-[0-9]{0,25})?", fullmatch=True),
    st.integers(),
    st.none(),
)
filters = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["courses", "orgs", "sites", "users", "event_types", "colour"]),
        st.one_of(st.lists(st.text(max_size=20), max_size=3), st.text(max_size=10), st.integers()),
        max_size=3,
    ),
    st.text(max_size=10),
)
subscribe_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "SUBSCRIBE", "ping", ""])},
    optional={"filter": filters, "resume_from": cursors},
).map(json.dumps)
frames = st.one_of(
    subscribe_like,
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(lambda n: "x" * n, st.integers(60_000, 70_000)),
    st.just('{"type": "subscribe"}'),
)


@pytest.fixture(scope="module")
def fuzz_hub(redis_server: RedisServer) -> Iterator[HubProcess]:
    process = HubProcess(redis_server.url, "t:protocol-fuzz:")
    process.start()
    yield process
    process.stop()


async def _outcome(url: str, token: str, sent: list[str | bytes]) -> int | None:
    """The close code the hub chose, or None when it kept the socket."""
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        try:
            for frame in sent:
                await ws.send(frame)
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            await asyncio.wait_for(ws.recv(), 0.2)  # a close decided after the pong still shows here
        except TimeoutError:
            return None
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else -1
        return None


def test_random_client_frames_never_break_the_hub(fuzz_hub: HubProcess) -> None:
    token = fuzz_hub.token()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=1, max_size=6))
    def one_client(sent: list[str | bytes]) -> None:
        code = asyncio.run(_outcome(fuzz_hub.ws, token, sent))
        accepted = set(ACCEPTED_CLOSES)
        if any(len(frame) > 64 * 1024 for frame in sent):
            # The hub closes 1009 and drops the TCP connection; a client still writing may get the
            # reset before it reads that close frame.
            accepted.add(-1)
        assert code is None or code in accepted, f"closed with {code} after {[str(f)[:60] for f in sent]}"

    one_client()
    assert fuzz_hub.process is not None and fuzz_hub.process.poll() is None
    assert httpx.get(f"{fuzz_hub.http}/readyz", timeout=5).status_code == 200


@pytest.mark.slow
def test_admin_api_fuzzed_by_schemathesis_never_answers_5xx_nor_off_its_document(
    fuzz_hub: HubProcess, tmp_path: Path
) -> None:
    binary = shutil.which("st", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    token = fuzz_hub.token_for(*fuzz_hub.client(scopes=["admin"]), scope="admin")
    result = subprocess.run(
        [
            binary, "run", f"{fuzz_hub.http}/admin/api/openapi.json", "--url", f"{fuzz_hub.http}/admin/api",
            "-H", f"Authorization: Bearer {token}", "--checks", CHECKS, "--max-examples", "40",
            "--seed", "26", "--generation-database", "none", "--suppress-health-check", "all",
        ],
        capture_output=True, text=True, timeout=170, cwd=tmp_path,  # it leaves a .schemathesis/ behind
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "only 401/403" not in result.stdout, "the admin token must stay usable for the whole run"
    assert fuzz_hub.process is not None and fuzz_hub.process.poll() is None
