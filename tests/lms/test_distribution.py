"""The LMS plug-in as operators install it: `pip install ./lms` in a fresh virtualenv, next to nothing else.

It must bring none of the hub's web stack into edx-platform's pinned environment, and an event it
sends from that environment must reach a subscriber of a real hub.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import venv
from pathlib import Path

import orjson
import pytest

from tests import ROOT
from tests.hubproc import Hub
from tests.wsclient import collect, connect

LMS_DIR = ROOT / "lms"
HUB_ONLY = ("starlette", "uvicorn", "authlib", "jinja2", "httpx", "tincan", "prometheus-client", "websockets")

SEND = """
import json, sys
from rthub_lms import RealtimeBackend

backend = RealtimeBackend(redis_url=sys.argv[1], redis_prefix=sys.argv[2], timeout=2)
print(json.dumps({"cursor": backend.send(json.loads(sys.argv[3])), "counts": backend.counts}))
"""


def _lms_venv(root: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(LMS_DIR)],
        check=True, timeout=300,
    )
    return python


@pytest.mark.peers  # a plain virtualenv with the plug-in alone
@pytest.mark.slow
def test_plugin_installs_alone_and_its_events_reach_a_hub_subscriber(hub: Hub, tmp_path: Path) -> None:
    python = _lms_venv(tmp_path / "lms-venv")
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True
    )
    installed = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert "rthub-lms" in installed and {"redis", "orjson"} <= installed
    assert not installed & set(HUB_ONLY), f"hub dependencies leaked into the LMS: {installed & set(HUB_ONLY)}"

    event = {
        "name": "edx.course.enrollment.activated",
        "timestamp": "2026-11-29T12:00:00+00:00",
        "context": {"user_id": 42, "course_id": "course-v1:MITx+6.002x+2026", "org_id": "MITx"},
        "data": {"course_id": "course-v1:MITx+6.002x+2026", "user_id": 42, "mode": "audit"},
    }

    async def scenario() -> tuple[dict, list[dict]]:
        ws = await connect(hub.ws, hub.token(grant=[{"courses": ["course-v1:MITx+*"]}]))
        try:
            sent = await asyncio.to_thread(
                subprocess.run,
                [str(python), "-c", SEND, hub.redis_url, hub.prefix, orjson.dumps(event).decode()],
                capture_output=True, text=True, timeout=60, cwd=tmp_path,
            )
            assert sent.returncode == 0, sent.stderr
            return json.loads(sent.stdout), await collect(ws, 1)
        finally:
            await ws.close()

    report, frames = asyncio.run(scenario())
    assert report["cursor"], report
    assert report["counts"]["published"] == 1
    assert frames[0]["type"] == "event" and frames[0]["cursor"] == report["cursor"]
    assert frames[0]["event_type"] == "edx.course.enrollment.activated"
