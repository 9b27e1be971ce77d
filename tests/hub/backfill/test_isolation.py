"""History goes to the one client backfilled, never through the stream: a WebSocket consumer of the same
course gets none of it, and a learner has the same actor in backfilled and live statements."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from rthub_lms.backend import RealtimeBackend
from tests.hub.backfill.helpers import backfill, history, write_log
from tests.hub.delivery.webhook.formats.helpers import HUB_ENV
from tests.hub.delivery.webhook.helpers import until_delivering
from tests.hub.delivery.webhook.receiver import Receiver
from tests.hubproc import InProcessHub
from tests.servers import RedisServer
from tests.waiting import wait_until
from tests.wsclient import collect, connect, quiet

COURSE = "course-v1:HarvardX+CS50x+2026"


@pytest.fixture
def hub(redis_server: RedisServer, prefix: str) -> Iterator[InProcessHub]:
    started = InProcessHub(redis_server.url, prefix, env=HUB_ENV)
    started.start()
    yield started
    started.stop()


def learner(event: dict) -> str:
    return str(event["context"]["user_id"])


def actor(frame: dict) -> str:
    return frame["data"]["actor"]["account"]["name"]


def test_history_reaches_only_its_client_with_the_learners_live_actor(hub: InProcessHub, tmp_path: Path) -> None:
    events = [event for event in history(400, seed=5) if event["context"]["course_id"] == COURSE]
    someone = learner(events[0])
    log = write_log(tmp_path / "tracking.log.gz", events)
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, timeout=2.0)
    live_event = {**copy.deepcopy(events[0]), "timestamp": datetime.now(UTC).isoformat()}
    live_event.setdefault("name", live_event.get("event_type"))
    video = next(event for event in events if event.get("name") == "play_video")
    marker = {**copy.deepcopy(video), "timestamp": datetime.now(UTC).isoformat()}

    async def scenario() -> tuple[list[dict], list[dict]]:
        ws = await connect(hub.ws, hub.token(grant=[{"courses": [COURSE]}]))
        try:
            assert backend.send(copy.deepcopy(live_event)) is not None
            first = await collect(ws, 1)
            wait_until(lambda: len(receiver.requests) == 1, 20, "the live event's webhook")
            done = await asyncio.to_thread(backfill, hub.env, "--client", client_id, "--batch-size", "50", str(log))
            assert done.returncode == 0, done.stderr
            assert backend.send(copy.deepcopy(marker)) is not None
            after = await collect(ws, 1)
            return first + after, await quiet(ws, 0.5)
        finally:
            await ws.close()
            backend.close()

    with Receiver() as receiver:
        client_id, _ = hub.client(name="warehouse", delivery="webhook", webhook_url=receiver.url,
                                  grant=[{"courses": [COURSE]}])
        until_delivering(hub, client_id)
        socket_frames, later = asyncio.run(scenario())
        assert [frame["event_type"] for frame in socket_frames] == [live_event["name"], "play_video"]
        assert not later and all(not frame["cursor"].startswith("0-") for frame in socket_frames)
        wait_until(lambda: len(receiver.requests) >= 1 + -(-len(events) // 50) + 1, 20, "every webhook")
        ours = [r for r in receiver.requests if r.headers["webhook-id"].startswith("msg_backfill-")]
        live = [orjson.loads(r.body) for r in receiver.requests if r not in ours]
        backfilled = [frame for r in ours for frame in orjson.loads(r.body)["events"]]
    assert len(backfilled) == len(events) and len(live) == 2
    own = {actor(frame) for frame, event in zip(backfilled, events, strict=True) if learner(event) == someone}
    others = {actor(frame) for frame, event in zip(backfilled, events, strict=True) if learner(event) != someone}
    assert own == {actor(live[0])} and actor(live[0]) not in others and others
