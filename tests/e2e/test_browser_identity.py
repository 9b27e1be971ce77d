"""For browser events `data` is written by the learner's browser, so user, course and
org come only from the server-set `context`. The attack: a learner's page sends a `play_video` whose
`data` claims another course (and another user); a consumer granted that course or that user must not
receive it. Server events keep their `data` fallback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from rthub_lms.backend import RealtimeBackend
from tests import SEND_TIMEOUT
from tests.hubproc import Hub
from tests.wsclient import collect, connect, quiet

VICTIM_COURSE = "course-v1:Victim+Secret+2026"
OWN_COURSE = "course-v1:HarvardX+CS50x+2026"


def browser_video(context_course: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """A tracking-log browser event as the LMS's `/event` endpoint logs it: the page wrote `event`."""
    context: dict[str, Any] = {"user_id": 105, "org_id": "HarvardX", "path": "/event"}
    if context_course:
        context["course_id"] = context_course
    return {
        "event_type": "play_video",
        "event_source": "browser",
        "time": datetime.now(UTC).isoformat(),
        "event": {"id": "intro01", "code": "b7xgknqkQk8", "duration": 195.0, "currentTime": 1.0, **data},
        "context": context,
        "username": "barbara.liskov",
    }


def server_enrollment(course: str) -> dict[str, Any]:
    """A server event that names its course and user only in `data` (trusted: the LMS wrote it)."""
    return {
        "name": "edx.course.enrollment.activated",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"course_id": course, "user_id": 102, "mode": "audit"},
        "context": {"event_source": "server", "host": "lms.example.org"},
    }


def test_a_browser_event_cannot_claim_another_course_or_user(hub: Hub) -> None:
    course_watcher = hub.token(grant=[{"courses": [VICTIM_COURSE]}])
    user_watcher = hub.token(grant=[{"users": ["999"]}])
    own_course = hub.token(grant=[{"courses": [OWN_COURSE]}])
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        sockets = [await connect(hub.ws, t) for t in (course_watcher, user_watcher, own_course)]
        spoofed = [
            backend.send(browser_video(OWN_COURSE, {"course_id": VICTIM_COURSE, "user_id": 999})),
            backend.send(browser_video(None, {"course_id": VICTIM_COURSE, "user_id": 999})),
        ]
        assert all(spoofed), backend.counts
        genuine = backend.send(server_enrollment(VICTIM_COURSE))
        assert genuine, backend.counts
        course_frames = await collect(sockets[0], 1) + await quiet(sockets[0], 0.5)
        user_frames = await quiet(sockets[1], 0.3)
        own_frames = await collect(sockets[2], 1) + await quiet(sockets[2], 0.3)
        for ws in sockets:
            await ws.close()
        return course_frames, user_frames, own_frames

    course_frames, user_frames, own_frames = asyncio.run(scenario())
    assert [f["event_type"] for f in course_frames] == ["edx.course.enrollment.activated"], (
        "only the server event reaches the victim course's consumer"
    )
    assert user_frames == [], "a browser cannot attribute an event to another user"
    assert [f["event_type"] for f in own_frames] == ["play_video"], "the event counts for the context's course"
    statement = own_frames[0]["data"]
    assert OWN_COURSE in str(statement) and VICTIM_COURSE not in str(statement)
