"""What the soak runs against: its courses, its publishers and its consumers (one OAuth client each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORG = "SoakX"
VISIBLE = tuple(f"course-v1:{ORG}+C{index}+2026" for index in range(4))
HIDDEN = "course-v1:HiddenX+H1+2026"  # no grant ever names it: nobody may receive its events
PUBLISHERS = 3
C0, C1, C2, C3 = VISIBLE


@dataclass(frozen=True)
class Consumer:
    """One client of the soak. `changes` are the grants it is given in turn while the run goes on
    (each applied at a scheduled moment); `create_at`/`revoke_at` are fractions of the fault phase."""

    name: str
    delivery: str  # websocket | webhook | lrs | caliper-endpoint
    translator: str
    grant: list[dict[str, Any]]
    receiver: str = ""  # the receiver process's mode, for webhook and caliper-endpoint
    streams: int = 0  # SDK streams, for websocket
    sdk_filter: list[dict[str, Any]] | None = None
    batch: tuple[int, float] = (1, 0.0)
    changes: tuple[list[dict[str, Any]], ...] = ()
    rotate: bool = False
    create_at: float = 0.0
    revoke_at: float = 0.0
    type: str = "other"
    extra: dict[str, Any] = field(default_factory=dict)


CONSUMERS: tuple[Consumer, ...] = (
    Consumer("ws-all", "websocket", "xapi", [{"orgs": [ORG]}], streams=2),
    Consumer("ws-video", "websocket", "caliper", [{"courses": [C0, C1], "event_types": ["*video*"]}], streams=1,
             sdk_filter=[{"event_types": ["play_video", "pause_video"]}], type="university"),
    Consumer("ws-shifting", "websocket", "xapi", [{"courses": [C1]}], streams=1,
             changes=([{"courses": [C1], "event_types": ["problem_check"]}], [{"courses": [C1, C2]}],
                      [{"courses": [C2]}])),
    Consumer("ws-rotated", "websocket", "xapi", [{"courses": [C2]}], streams=1, rotate=True, type="adaptive"),
    Consumer("ws-late", "websocket", "xapi", [{"courses": [C3]}], streams=1, create_at=0.2, revoke_at=0.7),
    Consumer("wh-ok", "webhook", "xapi", [{"courses": [C0, C1]}], receiver="ok"),
    Consumer("wh-slow", "webhook", "xapi", [{"orgs": [ORG], "event_types": ["*video*"]}], receiver="slow",
             batch=(20, 0.2)),
    Consumer("wh-flaky", "webhook", "caliper", [{"courses": [C2]}], receiver="flaky"),
    Consumer("wh-gone", "webhook", "xapi", [{"courses": [C3]}], receiver="gone"),
    Consumer("wh-shifting", "webhook", "xapi", [{"courses": [C0]}], receiver="ok", create_at=0.1,
             changes=([{"courses": [C0, C3]}], [{"courses": [C3], "event_types": ["*video*"]}])),
    # Ralph's file store reads every statement on each POST: a few per second keep it ahead of the run.
    Consumer("lrs", "lrs", "xapi", [{"courses": [C0], "event_types": ["problem_check", "edx.course.enrollment.*"]}],
             batch=(20, 0.5), type="enterprise"),
    Consumer("caliper", "caliper-endpoint", "caliper", [{"courses": [C2, C3]}], receiver="ok", batch=(10, 0.2),
             type="university"),
)
