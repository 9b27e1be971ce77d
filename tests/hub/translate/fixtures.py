"""rthub's own LMS events, one per covered name, written from the Open edX tracking-log documentation.

They carry known personal data (username, email, full name, IP, user agent, referer, session) so tests
can assert none of it reaches any output. Server events use the tracking-log shape, browser events the
event-tracking shape, so both normalisation paths are exercised. `FORMS` adds, for a name whose events
come in shapes its translators map differently, one event per form.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from rthub_lms.events import Event, normalise

COURSE = "course-v1:RthubX+T101+2024"
BLOCK = "block-v1:RthubX+T101+2024+type@{kind}+block@{name}"
VIDEO = "5f0b9c3e2d1a4b6c8e7f9a0b1c2d3e4f"
PROBLEM = BLOCK.format(kind="problem", name="9a8b7c6d5e4f30211203a4b5c6d7e8f9")
SEQUENCE = BLOCK.format(kind="sequential", name="0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f")
EXAM = BLOCK.format(kind="sequential", name="e1e2e3e4e5e6e7e8e9e0e1e2e3e4e5e6")

PII = {
    "username": "pii-learner-wanda",
    "email": "wanda.pii@example.org",
    "name": "Wanda Piiperson",
    "ip": "203.0.113.77",
    "agent": "PiiAgent/9.9 (X11; Linux x86_64)",
    "referer": f"http://lms.example.org/courses/{COURSE}/courseware/pii-referer-marker/",
    "session": "5e55105e55105e55105e55105e55105e",
}


def _server(name: str, data: dict[str, Any], path: str = "/event") -> dict[str, Any]:
    """Tracking-log shape: request fields at the top level, payload under `event`."""
    return {
        "event_type": name,
        "time": "2024-03-05T10:11:12.345678+00:00",
        "event_source": "server",
        "username": PII["username"],
        "ip": PII["ip"],
        "agent": PII["agent"],
        "host": "lms.example.org",
        "referer": PII["referer"],
        "session": PII["session"],
        "accept_language": "en-GB,en;q=0.9",
        "page": None,
        "context": {
            "course_id": COURSE,
            "org_id": "RthubX",
            "user_id": 42,
            "path": path,
            "email": PII["email"],
            "name": PII["name"],
            "module": {"display_name": "Rthub problem", "usage_key": PROBLEM},
        },
        "event": data,
    }


def _browser(name: str, data: Any, referer: str | None = None) -> dict[str, Any]:
    """Event-tracking shape as the browser sends it; the payload is often a JSON string."""
    return {
        "name": name,
        "timestamp": "2024-03-05T10:11:12.345678Z",
        "data": data,
        "context": {
            "course_id": COURSE,
            "org_id": "RthubX",
            "user_id": 42,
            "username": PII["username"],
            "ip": PII["ip"],
            "agent": PII["agent"],
            "referer": referer or PII["referer"],
            "session": PII["session"],
            "page": referer or PII["referer"],
            "event_source": "browser",
            "path": "/event",
        },
    }


_VIDEO = {"id": VIDEO, "code": "html5", "duration": 125.5}
_NOW = {**_VIDEO, "currentTime": 61.0625}
_NOW_NEW = {**_VIDEO, "current_time": 61.0625}


def _raw_events() -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = {
        "load_video": _browser("load_video", json.dumps(_VIDEO)),
        "edx.video.loaded": _browser("edx.video.loaded", _VIDEO),
        "play_video": _browser("play_video", _NOW),
        "edx.video.played": _browser("edx.video.played", _NOW_NEW),
        "pause_video": _browser("pause_video", _NOW),
        "edx.video.paused": _browser("edx.video.paused", _NOW_NEW),
        "stop_video": _browser("stop_video", _NOW),
        "edx.video.stopped": _browser("edx.video.stopped", _NOW_NEW),
        "complete_video": _browser("complete_video", _VIDEO),
        "edx.video.completed": _browser("edx.video.completed", _NOW_NEW),
        "seek_video": _browser(
            "seek_video", {**_VIDEO, "old_time": 61.5, "new_time": 10, "type": "onSlideSeek"}
        ),
        "edx.video.position.changed": _browser("edx.video.position.changed", {**_NOW_NEW, "new_time": 90}),
        "speed_change_video": _browser(
            "speed_change_video", {**_NOW_NEW, "old_speed": "1.0", "new_speed": "1.5"}
        ),
    }
    for name in (
        "show_transcript",
        "hide_transcript",
        "edx.video.transcript.shown",
        "edx.video.transcript.hidden",
        "edx.video.closed_captions.shown",
        "edx.video.closed_captions.hidden",
        "video_show_cc_menu",
        "video_hide_cc_menu",
    ):
        raw[name] = _browser(name, _NOW_NEW)
    jump = f"http://lms.example.org/courses/{COURSE}/jump_to/{SEQUENCE}"
    outline = {"current_url": "http://lms.example.org/x", "target_name": "Week 1", "target_url": jump}
    tabs = {"current_tab": 2, "id": SEQUENCE, "tab_count": 6, "widget_placement": "top"}
    raw.update(
        {
            "edx.ui.lms.link_clicked": _browser(
                "edx.ui.lms.link_clicked", {"current_url": "http://lms.example.org/x", "target_url": jump}
            ),
            "edx.ui.lms.outline.selected": _browser("edx.ui.lms.outline.selected", outline),
            "edx.ui.lms.sequence.outline.selected": _browser("edx.ui.lms.sequence.outline.selected", outline),
            "edx.ui.lms.sequence.next_selected": _browser("edx.ui.lms.sequence.next_selected", tabs),
            "edx.ui.lms.sequence.previous_selected": _browser("edx.ui.lms.sequence.previous_selected", tabs),
            "edx.ui.lms.sequence.tab_selected": _browser(
                "edx.ui.lms.sequence.tab_selected", {**tabs, "target_tab": 5}
            ),
        }
    )
    key = "9a8b7c6d5e4f30211203a4b5c6d7e8f9_2_1"
    raw.update(
        {
            "problem_check": _server(
                "problem_check",
                {
                    "problem_id": PROBLEM,
                    "answers": {key: "choice_1"},
                    "attempts": 2,
                    "grade": 1,
                    "max_grade": 1,
                    "success": "correct",
                    "correct_map": {key: {"correctness": "correct"}},
                    "submission": {
                        key: {
                            "question": "Which is a prime?",
                            "answer": "seven",
                            "response_type": "multiplechoiceresponse",
                            "input_type": "choicegroup",
                            "correct": True,
                            "variant": "",
                        }
                    },
                },
            ),
            "showanswer": _server("showanswer", {"problem_id": PROBLEM}),
            "edx.problem.hint.demandhint_displayed": _server(
                "edx.problem.hint.demandhint_displayed",
                {"module_id": PROBLEM, "hint_index": 0, "hint_len": 2, "hint_text": "Think of 7."},
            ),
            "edx.problem.completed": _server("edx.problem.completed", {"problem_id": PROBLEM}),
            "edx.grades.problem.submitted": _server(
                "edx.grades.problem.submitted",
                {
                    "problem_id": PROBLEM,
                    "course_id": COURSE,
                    "user_id": "42",
                    "weighted_earned": 1,
                    "weighted_possible": 2,
                },
            ),
        }
    )
    for name in ("activated", "deactivated", "mode_changed"):
        raw[f"edx.course.enrollment.{name}"] = _server(
            f"edx.course.enrollment.{name}", {"course_id": COURSE, "mode": "verified", "user_id": 42}
        )
    for name in ("passed.first_time", "now_passed", "now_failed"):
        raw[f"edx.course.grade.{name}"] = _server(
            f"edx.course.grade.{name}", {"course_id": COURSE, "user_id": 42}
        )
    raw["edx.grades.course.grade_calculated"] = _server(
        "edx.grades.course.grade_calculated",
        {"user_id": "42", "course_id": COURSE, "percent_grade": 0.75, "letter_grade": "B"},
    )
    raw["edx.grades.subsection.grade_calculated"] = _server(
        "edx.grades.subsection.grade_calculated",
        {
            "user_id": "42",
            "course_id": COURSE,
            "block_id": SEQUENCE,
            "weighted_total_earned": 2.0,
            "weighted_total_possible": 4.0,
        },
    )
    raw["edx.completion.block_completion.changed"] = _server(
        "edx.completion.block_completion.changed",
        {"user_id": 42, "course_id": COURSE, "block_id": PROBLEM, "block_type": "problem", "completion": 1.0},
    )
    for kind in ("practice", "proctored", "timed"):
        for status in ("created", "submitted"):
            exam = {
                "exam_id": 7,
                "exam_content_id": EXAM,
                "exam_name": "Midterm",
                "exam_default_time_limit_mins": 90,
                "attempt_id": 3,
                "attempt_user_id": 42,
                "attempt_code": "1F2E3D4C-5B6A-4798-8A7B-6C5D4E3F2A1B",
                "attempt_status": status,
                "attempt_started_at": "2024-03-05T09:00:00+00:00" if status == "submitted" else None,
                "attempt_completed_at": "2024-03-05T10:11:00+00:00" if status == "submitted" else None,
                "attempt_event_elapsed_time_secs": 4260.5 if status == "submitted" else None,
            }
            name = f"edx.special_exam.{kind}.attempt.{status}"
            raw[name] = _server(name, exam, path="/api/edx_proctoring/v1/proctored_exam/attempt")
    thread, response, comment = (
        "65aa00000000000000000001",
        "65aa00000000000000000002",
        "65aa00000000000000000003",
    )
    forum = {
        "commentable_id": "topic-1",
        "user_forums_roles": ["Student"],
        "target_username": PII["username"],
    }
    for name, content_id, data in (
        ("thread", thread, {"title": "Week 1 questions", "thread_type": "discussion", "body": "<p>Hi</p>"}),
        ("response", response, {"discussion": {"id": thread}, "body": "<p>Reply</p>"}),
        (
            "comment",
            comment,
            {"discussion": {"id": thread}, "response": {"id": response}, "body": "<p>Ok</p>"},
        ),
    ):
        plural = "threads" if name == "thread" else "comments"
        for action in ("created", "edited", "deleted", "reported", "unreported", "voted"):
            if name == "comment" and action == "voted":
                continue
            extra = {"vote_value": "up", "undo_vote": False} if action == "voted" else {}
            path = f"/api/discussion/v1/{plural}/" + ("" if action == "created" else f"{content_id}/")
            event_name = f"edx.forum.{name}.{action}"
            raw[event_name] = _server(event_name, {**forum, **data, **extra, "id": content_id}, path=path)
    for action in ("viewed", "followed", "unfollowed"):
        event_name = f"edx.forum.thread.{action}"
        raw[event_name] = _server(event_name, {**forum, "id": thread, "title": "Week 1 questions"}, path="/x")
    return raw


RAW_EVENTS = _raw_events()


def _problem_check_forms() -> dict[str, dict[str, Any]]:
    """A check of one question (`RAW_EVENTS`), of several (the server's; xAPI states a parent and a child
    per question), and the browser's (its answers url-encoded, the problem named by their keys or by
    the page's `activate_block_id`)."""
    block = PROBLEM.rsplit("@", 1)[1]
    colour, instruments = f"{block}_2_1", f"{block}_3_1"
    multi = {
        "problem_id": PROBLEM,
        "answers": {colour: "choice_2", instruments: ["choice_0", "choice_3"]},
        "attempts": 1,
        "grade": 1,
        "max_grade": 2,
        "success": "incorrect",
        "correct_map": {colour: {"correctness": "correct"}, instruments: {"correctness": "incorrect"}},
        "submission": {
            colour: {
                "question": "Which colour is a clear sky?",
                "answer": "blue",
                "response_type": "optionresponse",
                "input_type": "optioninput",
                "correct": True,
                "variant": "",
            },
            instruments: {
                "question": "Which of these are birds?",
                "answer": ["a robin", "a bat"],
                "response_type": "choiceresponse",
                "input_type": "checkboxgroup",
                "correct": False,
                "variant": "",
            },
        },
    }
    unit = BLOCK.format(kind="vertical", name="7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e")
    browser = _browser(
        "problem_check",
        f"input_{colour}=choice_2&input_{instruments}%5B%5D=choice_0&input_{instruments}%5B%5D=choice_3",
        referer=f"http://lms.example.org/xblock/{unit}?view=student_view",
    )
    browser["context"]["page"] = (
        f"http://lms.example.org/courses/{COURSE}/courseware/pii-referer-marker/?activate_block_id={quote(SEQUENCE)}"
    )
    return {
        "server": RAW_EVENTS["problem_check"],
        "server, multiple questions": _server("problem_check", multi),
        "browser": browser,
    }


FORMS: dict[str, dict[str, dict[str, Any]]] = {"problem_check": _problem_check_forms()}


def event(name: str) -> Event:
    return normalise(RAW_EVENTS[name])


def browser_problem_check(referer: str) -> Event:
    data = "input_9a8b7c6d5e4f30211203a4b5c6d7e8f9_2_1=choice_1"
    return normalise(_browser("problem_check", data, referer=referer))
