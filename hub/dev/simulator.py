"""A simulated LMS for `rthub demo` and benchmarks: learners enrolling, watching videos, answering problems.

Events are shaped like the ones Open edX emits (event-tracking shape, with the request context the
LMS adds), so they exercise the same normalise -> filter -> anonymise -> translate path as real ones.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

COURSES = (
    "course-v1:MITx+6.002x+2026_T1",
    "course-v1:HarvardX+CS50x+2026",
    "course-v1:edX+DemoX+Demo_Course",
)
USERNAMES = (
    "ada.lovelace", "grace.hopper", "alan.turing", "edsger.dijkstra",
    "barbara.liskov", "donald.knuth", "frances.allen", "ken.thompson",
)


@dataclass
class Learner:
    user_id: int
    username: str
    course: str
    video_position: float = 0.0
    enrolled: bool = False


def _block(course: str, kind: str, name: str) -> str:
    return f"block-v1:{course.removeprefix('course-v1:')}+type@{kind}+block@{name}"


def _org(course: str) -> str:
    return course.removeprefix("course-v1:").split("+", 1)[0]


@dataclass
class SimulatedLMS:
    """Produces a plausible stream of learner activity, one event per `next_event()` call."""

    host: str = "lms.example.org"
    seed: int | None = None
    learners: list[Learner] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        if not self.learners:
            self.learners = [
                Learner(101 + index, name, self.random.choice(COURSES)) for index, name in enumerate(USERNAMES)
            ]

    def next_event(self) -> dict[str, Any]:
        learner = self.random.choice(self.learners)
        if not learner.enrolled:
            learner.enrolled = True
            return self._event(learner, "edx.course.enrollment.activated", {
                "course_id": learner.course, "user_id": learner.user_id, "mode": "audit",
            }, source="server")
        roll = self.random.random()
        if roll < 0.6:
            return self._video(learner)
        if roll < 0.9:
            return self._problem(learner)
        return self._event(learner, "edx.ui.lms.sequence.next_selected", {
            "current_tab": 1, "tab_count": 4, "target_tab": 2, "widget_placement": "top",
            "id": _block(learner.course, "sequential", "week1"),
        })

    def _video(self, learner: Learner) -> dict[str, Any]:
        duration = 195.0
        name = self.random.choice(("load_video", "play_video", "pause_video", "seek_video", "stop_video"))
        data: dict[str, Any] = {"id": "intro01", "code": "b7xgknqkQk8", "duration": duration}
        if name == "seek_video":
            data.update(old_time=learner.video_position, new_time=min(duration, learner.video_position + 30),
                        type="onSlideSeek")
            learner.video_position = data["new_time"]
        elif name != "load_video":
            learner.video_position = min(duration, learner.video_position + self.random.uniform(1, 40))
            data["currentTime"] = round(learner.video_position, 3)
        return self._event(learner, name, data)

    def _problem(self, learner: Learner) -> dict[str, Any]:
        correct = self.random.random() < 0.6
        problem = _block(learner.course, "problem", "sum_of_squares")
        answer_id = "sum_of_squares_2_1"
        data = {
            "problem_id": problem,
            "attempts": self.random.randint(1, 3),
            "grade": 1 if correct else 0,
            "max_grade": 1,
            "success": "correct" if correct else "incorrect",
            "answers": {answer_id: "choice_1" if correct else "choice_0"},
            "submission": {answer_id: {
                "question": "Which choice gives the sum of squares?",
                "answer": "choice 1" if correct else "choice 0",
                "response_type": "multiplechoiceresponse", "input_type": "choicegroup",
                "correct": correct, "variant": "", "group_label": "",
            }},
            "correct_map": {answer_id: {"correctness": "correct" if correct else "incorrect"}},
            "state": {"seed": 1, "student_answers": {}, "correct_map": {}, "done": None},
        }
        return self._event(learner, "problem_check", data, source="server",
                           module={"display_name": "Sum of squares", "usage_key": problem})

    def _event(self, learner: Learner, name: str, data: dict[str, Any], source: str = "browser",
               module: dict[str, str] | None = None) -> dict[str, Any]:
        context: dict[str, Any] = {
            "course_id": learner.course,
            "org_id": _org(learner.course),
            "user_id": learner.user_id,
            "username": learner.username,
            "host": self.host,
            "ip": f"203.0.113.{learner.user_id % 250}",
            "agent": "Mozilla/5.0 (X11; Linux x86_64) rthub-simulator",
            "session": uuid.UUID(int=self.random.getrandbits(128)).hex,
            "event_source": source,
            "path": "/event",
            "page": f"https://{self.host}/courses/{learner.course}/courseware/",
        }
        if module:
            context["module"] = module
        return {
            "name": name,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": data,
            "context": context,
        }


def main() -> None:
    """Publish simulated traffic into Redis through `RealtimeBackend` (docker-compose's publisher)."""
    import argparse
    import time

    from rthub_lms.backend import RealtimeBackend

    parser = argparse.ArgumentParser(description="publish simulated LMS events into Redis")
    parser.add_argument("--rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--redis-url", help="Redis URL (env RTHUB_REDIS_URL)")
    args = parser.parse_args()
    backend = RealtimeBackend(redis_url=args.redis_url)
    lms = SimulatedLMS()
    while True:
        backend.send(lms.next_event())
        if sum(backend.counts.values()) % 100 == 0:
            print(f"simulator: {backend.counts}", flush=True)
        time.sleep(1 / args.rate)


if __name__ == "__main__":
    main()
