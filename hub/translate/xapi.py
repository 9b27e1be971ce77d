"""Open edX events to xAPI 1.0.3 statements, in the dialect of the Open edX reference translator.

Each builder reads a `Source` and returns the statements for one event. Repeating fragments come
from `xapi_fragments` (built and validated by tincan once); per event only the actor lookup, the
timestamp, the statement id, results and extensions are assembled.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from hub.translate import ids
from hub.translate.base import Source, TranslationError
from hub.translate.xapi_fragments import STATEMENT_VERSION, Ext, activity, actor, duration, verb
from hub.translate.xapi_fragments import with_definition_extensions as with_ext

Builder = Callable[[Source], list[dict[str, Any]]]


def statement(
    src: Source,
    verb_key: str,
    obj: dict[str, Any],
    *,
    parent_course: bool = True,
    result: dict[str, Any] | None = None,
    extensions: dict[str, Any] | None = None,
    context_activities: dict[str, Any] | None = None,
    statement_ref: str | None = None,
) -> dict[str, Any]:
    """One statement; its id is the UUID5 of its content (`ids.content_id`), not the reference's."""
    verb_fragment = verb(verb_key)
    actor_fragment = actor(src.root, src.actor_id)
    context: dict[str, Any] = {}
    if context_activities is not None:
        context["contextActivities"] = context_activities
    elif parent_course and src.context_course_id() is not None:
        context["contextActivities"] = {"parent": [course_activity(src)]}
    if statement_ref is not None:
        context["statement"] = {"objectType": "StatementRef", "id": statement_ref}
    context["extensions"] = {Ext.TRANSFORMER_VERSION: src.version, **(extensions or {})}
    built = {
        "version": STATEMENT_VERSION,
        "actor": actor_fragment,
        "verb": verb_fragment,
        "object": obj,
        "timestamp": ids.utc_timestamp(src.timestamp),
        "context": context,
    }
    if result is not None:
        built["result"] = result
    built["id"] = ids.content_id(built)
    return built


def course_activity(src: Source) -> dict[str, Any]:
    return activity(ids.course_url(src.root, src.course_id()), "course")


def block_activity(src: Source, key: str, kind: str) -> dict[str, Any]:
    """The block whose usage key is `data[key]`, as `{root}/xblock/{usage key}`."""
    return activity(ids.block_url(src.root, src.need_str(key)), kind)


# Video -----------------------------------------------------------------------------------------


def _video(verb_key: str, result: Callable[[Source], dict[str, Any] | None]) -> Builder:
    def build(src: Source) -> list[dict[str, Any]]:
        length = _seconds(src, "duration")
        extensions = {Ext.VIDEO_LENGTH: length} if length is not None else {}
        obj = activity(ids.video_url(src), "video")
        return [statement(src, verb_key, obj, result=result(src), extensions=extensions)]

    return build


def _seconds(src: Source, *keys: str) -> float | None:
    """Seconds as the reference states them: rounded to milliseconds (`float(f"{x:.3f}")`)."""
    value = src.optional_number(*keys)
    return None if value is None else float(f"{float(value):.3f}")


def _current_time(src: Source) -> float | None:
    """`current_time`, else `currentTime`; as the reference, a zero `current_time` counts as absent."""
    if src.data.get("current_time"):
        return _seconds(src, "current_time")
    return _seconds(src, "currentTime")


def _time_result(src: Source) -> dict[str, Any] | None:
    now = _current_time(src)
    return None if now is None else {"extensions": {Ext.VIDEO_TIME: now}}


def _completed_result(src: Source) -> dict[str, Any]:
    """Completion, with the video length as both `duration` and `time` (as the reference)."""
    length = _seconds(src, "duration")
    result: dict[str, Any] = {"completion": True}
    if length is not None:
        result["extensions"] = {Ext.VIDEO_TIME: length}
        result["duration"] = duration(length)
    return result


def _seek_result(src: Source) -> dict[str, Any] | None:
    """`time-from` / `time-to` from `old_time` / `new_time`, each when present."""
    extensions = {
        key: value
        for key, value in (
            (Ext.VIDEO_TIME_FROM, _seconds(src, "old_time")),
            (Ext.VIDEO_TIME_TO, _seconds(src, "new_time")),
        )
        if value is not None
    }
    return {"extensions": extensions} if extensions else None


def _captions(enabled: bool) -> Callable[[Source], dict[str, Any]]:
    def result(src: Source) -> dict[str, Any]:
        found = _time_result(src) or {"extensions": {}}
        found["extensions"][Ext.VIDEO_CC_ENABLED] = enabled
        return found

    return result


def _speed_result(src: Source) -> dict[str, Any]:
    return {
        "extensions": {
            Ext.SPEED_FROM: f"{src.need('old_speed')}x",
            Ext.SPEED_TO: f"{src.need('new_speed')}x",
        }
    }


# Navigation ------------------------------------------------------------------------------------


def _link_clicked(src: Source) -> list[dict[str, Any]]:
    return [statement(src, "navigated", activity(src.need_str("target_url"), "link"))]


def _outline_selected(src: Source) -> list[dict[str, Any]]:
    name = src.data.get("target_name")
    obj = activity(src.need_str("target_url"), "module", name=name if isinstance(name, str) else None)
    return [statement(src, "navigated", obj)]


def _sequence(ending: str | None) -> Builder:
    def build(src: Source) -> list[dict[str, Any]]:
        obj = block_activity(src, "id", "resource")
        tab_count = src.optional_number("tab_count")
        if tab_count is not None:
            obj = with_ext(obj, {Ext.TOTAL_ITEMS: tab_count})
        extensions = {
            key: value
            for key, value in (
                (Ext.STARTING_POSITION, src.optional_number("current_tab")),
                (Ext.ENDING_POINT, ending if ending is not None else src.optional_number("target_tab")),
            )
            if value is not None
        }
        return [statement(src, "navigated", obj, extensions=extensions)]

    return build


# Problems --------------------------------------------------------------------------------------

INTERACTION_TYPES = {
    "choiceresponse": "choice",
    "multiplechoiceresponse": "choice",
    "numericalresponse": "numeric",
    "stringresponse": "fill-in",
    "customresponse": "other",
    "coderesponse": "performance",
    "externalresponse": "performance",
    "formularesponse": "fill-in",
    "schematicresponse": "sequencing",
    "imageresponse": "matching",
    "annotationresponse": "fill-in",
    "choicetextresponse": "choice",
    "optionresponse": "choice",
    "symbolicresponse": "fill-in",
    "truefalseresponse": "true-false",
}


def _problem_key(src: Source) -> str:
    """`data.problem_id` or `data.module_id`; an event with no payload names it in `context.module`."""
    if src.data:
        problem = src.data.get("problem_id") or src.data.get("module_id")
    else:
        module = src.context.get("module")
        problem = module.get("usage_key") if isinstance(module, dict) else None
    if not isinstance(problem, str) or not problem:
        raise TranslationError(f"{src.name}: missing required field `data.problem_id`")
    return problem


def _problem_url(src: Source) -> str:
    return ids.block_url(src.root, _problem_key(src))


def _problem_completed(src: Source) -> list[dict[str, Any]]:
    """The problem as every other statement names it, `{root}/xblock/{usage key}` (the reference sends
    the bare usage key, so an LRS cannot join this statement with the problem's others); the event names
    no response type, so the interaction type is `other` (xAPI requires one on a cmi.interaction)."""
    return [statement(src, "completed", activity(_problem_url(src), "interaction", interaction_type="other"))]


def _show_answer(src: Source) -> list[dict[str, Any]]:
    """The problem's solution, `{root}/xblock/{problem}/answer`."""
    url = ids.block_url(src.root, src.need_str("problem_id"))
    return [statement(src, "asked", activity(f"{url}/answer", "solution"))]


def _hint_displayed(src: Source) -> list[dict[str, Any]]:
    """One hint of the problem, `{root}/xblock/{problem}/hint/{index}`."""
    index = src.need("hint_index")
    if isinstance(index, bool) or not isinstance(index, int | str):
        raise TranslationError(f"{src.name}: `data.hint_index` must be an integer")
    url = ids.block_url(src.root, src.need_str("module_id"))
    return [statement(src, "asked", activity(f"{url}/hint/{index}", "supplemental-info"))]


def _score(raw: float | None, maximum: float | None, scaled: float | None = None) -> dict[str, Any]:
    """An xAPI score with every number a float, whatever form the LMS gave (`3`, `3.0`), and only the
    bounds the numbers satisfy: xAPI 1.0.3 Data 2.4.5.1 requires min < max, raw within them and scaled
    within [-1, 1]; an LMS that reports more points than possible, or a maximum of 0, gets its raw
    score alone (unrestricted without bounds) rather than bounds that contradict it. `scaled` is
    raw / max unless given."""
    score: dict[str, Any] = {}
    bounded = maximum is None or maximum > 0
    if raw is not None:
        score["raw"] = float(raw)
        bounded = bounded and raw >= 0 and (maximum is None or raw <= maximum)
    if not bounded:
        return score
    score["min"] = 0.0
    if maximum is not None:
        score["max"] = float(maximum)
        if scaled is None and raw is not None:
            scaled = raw / maximum
    if scaled is not None and -1 <= scaled <= 1:
        score["scaled"] = float(scaled)
    return score


def _problem_submitted(src: Source) -> list[dict[str, Any]]:
    """As the reference, a missing or null weight counts as 0 (so `success` is earned >= 0)."""
    earned = src.optional_number("weighted_earned") or 0
    possible = src.optional_number("weighted_possible") or 0
    result: dict[str, Any] = {"success": earned >= possible, "score": _score(earned, possible)}
    obj = activity(_problem_url(src), "question")
    return [statement(src, "attempted", obj, result=result)]


def _response(answer: Any) -> str:
    """As the reference: a list as JSON, anything else as Python's `str` of it."""
    return json.dumps(answer, ensure_ascii=False) if isinstance(answer, list) else str(answer)


def _submissions(src: Source) -> dict[str, Any]:
    submission = src.data.get("submission") or {}
    if not isinstance(submission, dict) or not all(isinstance(item, dict) for item in submission.values()):
        raise TranslationError(f"{src.name}: `data.submission` must map question keys to objects")
    return submission


def _answered(submissions: dict[str, Any]) -> dict[str, Any] | None:
    """The first submission that names its response type (the one the reference describes the problem by)."""
    return next((item for item in submissions.values() if item.get("response_type")), None)


def _first_response_type(submissions: dict[str, Any]) -> str:
    found = next((item["response_type"] for item in submissions.values() if "response_type" in item), None)
    return INTERACTION_TYPES.get(found, "other") if isinstance(found, str) else "other"


def _problem_definition(
    src: Source, url: str, submission: dict[str, Any] | None, default_type: str, group: bool = False
) -> dict[str, Any]:
    """The problem (or one question) as the reference defines it: its question text when a submission
    names a response type, else the problem's display name; the attempt count as an extension."""
    if submission:
        if "question" not in submission:
            raise TranslationError(f"{src.name}: missing required field `data.submission.*.question`")
        kind = INTERACTION_TYPES.get(submission.get("response_type"), "other")
        obj = activity(
            url, "interaction", description=_question(submission), interaction_type="other" if group else kind
        )
    else:
        name = _module_name(src)
        obj = activity(
            url,
            "interaction",
            name=name or None,
            name_lang="en-US",
            interaction_type="other" if group else default_type,
        )
    attempts = src.data.get("attempts")
    if attempts and not isinstance(attempts, bool):
        obj = with_ext(obj, {Ext.ATTEMPT_ID: attempts})
    return obj


def _problem_check(src: Source) -> list[dict[str, Any]]:
    if not isinstance(src.event.get("data"), dict):
        obj = activity(
            ids.browser_problem_url(src),
            "interaction",
            name=_module_name(src) or None,
            name_lang="en-US",
            interaction_type="other",
        )
        return [statement(src, "attempted", obj)]
    submissions = _submissions(src)
    answered = _answered(submissions)
    url = _problem_url(src)
    multi = len(submissions) > 1
    default_type = _first_response_type(submissions)
    obj = _problem_definition(src, url, answered, default_type, group=multi)
    result = _problem_result(src, answered)
    parent = statement(src, "evaluated", obj, result=result)
    if not multi:
        return [parent]
    grouping = parent["context"].get("contextActivities", {}).get("parent")
    activities = {"parent": [obj], **({"grouping": grouping} if grouping else {})}
    head = url.rsplit("@", 1)[0]
    statements = [parent]
    for key, answer in submissions.items():
        question = _problem_definition(src, f"{head}@{key}", answer, default_type)
        if "answer" not in answer:
            raise TranslationError(f"{src.name}: missing required field `data.submission.{key}.answer`")
        child_result: dict[str, Any] = {"response": _response(answer["answer"])}
        if answer.get("correct") is not None:
            child_result = {"success": bool(answer["correct"]), **child_result}
        statements.append(
            statement(
                src,
                "evaluated",
                question,
                result=child_result,
                context_activities=activities,
                statement_ref=parent["id"],
            )
        )
    return statements


def _problem_result(src: Source, answered: dict[str, Any] | None) -> dict[str, Any]:
    """Score, success and response as the reference reads them (grades may be absent)."""
    if answered is not None:
        if "answer" not in answered:
            raise TranslationError(f"{src.name}: missing required field `data.submission.*.answer`")
        response, correct = answered["answer"], answered.get("correct")
    else:
        response, correct = src.data.get("answers"), src.data.get("success") == "correct"
    score = _score(src.optional_number("grade"), src.optional_number("max_grade"))
    result: dict[str, Any] = {"score": score} if score else {}
    if correct is not None:
        result["success"] = bool(correct)
    if response is not None:
        result["response"] = _response(response)
    return result


def _question(answer: dict[str, Any]) -> str | None:
    """The question text; an empty one is left out (xAPI forbids empty values, the reference sends them)."""
    question = answer.get("question")
    return question if isinstance(question, str) and question else None


def _module_name(src: Source) -> str | None:
    module = src.context.get("module")
    name = module.get("display_name") if isinstance(module, dict) else None
    return name if isinstance(name, str) else None


# Course: enrollment, grades, completion ----------------------------------------------------------


def _course_object(src: Source) -> dict[str, Any]:
    obj = course_activity(src)
    mode = src.data.get("mode")
    return with_ext(obj, {Ext.ACROSSX_TYPE: mode}) if isinstance(mode, str) and mode else obj


def _enrollment(verb_key: str) -> Builder:
    def build(src: Source) -> list[dict[str, Any]]:
        return [statement(src, verb_key, _course_object(src), parent_course=False)]

    return build


def _course_grade(src: Source) -> list[dict[str, Any]]:
    percent = src.need_number("percent_grade")
    letter = src.data.get("letter_grade")
    result = {
        "score": _score(percent, 1.0, scaled=percent),
        "extensions": {Ext.GRADE_CLASSIFICATION: letter if isinstance(letter, str) and letter else "Fail"},
    }
    return [statement(src, "earned", course_activity(src), result=result)]


def _subsection_grade(src: Source) -> list[dict[str, Any]]:
    earned = src.need_number("weighted_total_earned")
    possible = src.need_number("weighted_total_possible")
    result = {"score": _score(earned, possible), "success": earned >= possible}
    return [statement(src, "earned", block_activity(src, "block_id", "resource"), result=result)]


def _completion(src: Source) -> list[dict[str, Any]]:
    completion = src.need_number("completion")
    result = {"completion": completion == 1.0, "extensions": {Ext.PROGRESS: completion * 100}}
    return [statement(src, "progressed", block_activity(src, "block_id", "resource"), result=result)]


# Special exams ---------------------------------------------------------------------------------


def _exam(kind: str, verb_key: str, submitted: bool) -> Builder:
    def build(src: Source) -> list[dict[str, Any]]:
        name = src.need_str("exam_name")
        obj = activity(ids.block_url(src.root, src.need_str("exam_content_id")), kind, name=name)
        limit = src.optional_number("exam_default_time_limit_mins")
        if limit is not None:
            obj = with_ext(obj, {Ext.TIME_LIMIT: limit})
        attempt_extensions: dict[str, Any] = {}
        if submitted:
            for key, field in (
                (Ext.ATTEMPT_STARTED, "attempt_started_at"),
                (Ext.ATTEMPT_COMPLETED, "attempt_completed_at"),
                (Ext.DURATION, "attempt_event_elapsed_time_secs"),
            ):
                if src.data.get(field) is not None:
                    attempt_extensions[key] = src.data[field]
        attempt_id = src.optional_number("attempt_id")
        if attempt_id is not None:
            attempt_extensions[Ext.ATTEMPT_ID] = src.data["attempt_id"]
        attempt = activity(_attempt_iri(src), "attempt", name=name)
        if attempt_extensions:
            attempt = with_ext(attempt, attempt_extensions)
        activities = {"parent": [course_activity(src)], "grouping": [attempt]}
        return [statement(src, verb_key, obj, context_activities=activities)]

    return build


def _attempt_iri(src: Source) -> str:
    """The attempt code as an IRI: the reference sends the bare code, which xAPI rejects."""
    code = src.need_str("attempt_code")
    try:
        return uuid.UUID(code).urn
    except ValueError:
        return f"{src.root}/proctoring/attempt/{code}"


# Forum -----------------------------------------------------------------------------------------


def _forum(verb_key: str, *, family: str, extension: str | None = None) -> Builder:
    def build(src: Source) -> list[dict[str, Any]]:
        obj = activity(_forum_iri(src, family), "discussion", name=_title(src))
        extensions = {}
        if extension is not None and src.data.get(extension) is not None:
            extensions[Ext.ACROSSX_TYPE] = src.data[extension]
        activities: dict[str, Any] = {}
        if src.context_course_id() is not None:
            activities["parent"] = [course_activity(src)]
        thread = src.data.get("discussion")
        if isinstance(thread, dict) and isinstance(thread.get("id"), str) and thread["id"]:
            thread_iri = f"{src.root}/api/discussion/v1/threads/{thread['id']}"
            activities["grouping"] = [activity(thread_iri, "discussion")]
        return [statement(src, verb_key, obj, extensions=extensions, context_activities=activities or None)]

    return build


# Discussion routes of the LMS (the API, and the forum pages under a course); never a user's.
_DISCUSSION_PATH = re.compile(
    r"(?:/api/discussion/v\d+/(?:comments|threads)|/courses/[\w.:+@-]+/discussion)(?:/(?!users?/)[\w.:+@-]+)*/?\Z"
)


def _forum_iri(src: Source, family: str) -> str:
    """`{root}{path}/{id}`, as the reference: the LMS request path without the content id, then the id.

    The path is the discussion call that emitted the event (`/api/discussion/v1/threads/{id}/`,
    `/courses/{course}/discussion/forum/{topic}/threads/{id}`, ...). Any other path (which may name a
    user) is never copied: the IRI is then `{root}/api/discussion/v1/{threads|comments}/{id}`.
    """
    content_id = src.need_str("id")
    path = src.context.get("path")
    if not isinstance(path, str) or not path:
        raise TranslationError(f"{src.name}: missing required field `context.path`")
    if not _DISCUSSION_PATH.match(path):
        return f"{src.root}/api/discussion/v1/{family}/{content_id}"
    base = path.rstrip("/").replace(content_id, "").rstrip("/")
    return f"{src.root}{base}/{content_id}"


def _title(src: Source) -> str | None:
    title = src.data.get("title")
    return title if isinstance(title, str) and title else None


def _registry() -> dict[str, Builder]:
    video = {
        ("load_video", "edx.video.loaded"): _video("initialized", lambda src: None),
        ("play_video", "edx.video.played"): _video("played", _time_result),
        ("pause_video", "edx.video.paused"): _video("paused", _time_result),
        ("stop_video", "edx.video.stopped"): _video("terminated", _time_result),
        ("complete_video", "edx.video.completed"): _video("completed", _completed_result),
        ("seek_video", "edx.video.position.changed"): _video("seeked", _seek_result),
        ("speed_change_video",): _video("interacted", _speed_result),
        (
            "show_transcript",
            "edx.video.transcript.shown",
            "edx.video.closed_captions.shown",
            "video_show_cc_menu",
        ): (_video("interacted", _captions(True))),
        (
            "hide_transcript",
            "edx.video.transcript.hidden",
            "edx.video.closed_captions.hidden",
            "video_hide_cc_menu",
        ): (_video("interacted", _captions(False))),
    }
    table: dict[str, Builder] = {name: build for names, build in video.items() for name in names}
    table.update(
        {
            "edx.ui.lms.link_clicked": _link_clicked,
            "edx.ui.lms.outline.selected": _outline_selected,
            "edx.ui.lms.sequence.outline.selected": _outline_selected,
            "edx.ui.lms.sequence.next_selected": _sequence("next unit"),
            "edx.ui.lms.sequence.previous_selected": _sequence("previous unit"),
            "edx.ui.lms.sequence.tab_selected": _sequence(None),
            "problem_check": _problem_check,
            "showanswer": _show_answer,
            "edx.problem.hint.demandhint_displayed": _hint_displayed,
            "edx.problem.completed": _problem_completed,
            "edx.grades.problem.submitted": _problem_submitted,
            "edx.course.enrollment.activated": _enrollment("registered"),
            "edx.course.enrollment.mode_changed": _enrollment("registered"),
            "edx.course.enrollment.deactivated": _enrollment("unregistered"),
            "edx.course.grade.passed.first_time": _enrollment("passed"),
            "edx.course.grade.now_passed": _enrollment("passed"),
            "edx.course.grade.now_failed": _enrollment("failed"),
            "edx.grades.course.grade_calculated": _course_grade,
            "edx.grades.subsection.grade_calculated": _subsection_grade,
            "edx.completion.block_completion.changed": _completion,
        }
    )
    for kind in ("practice", "proctored", "timed"):
        table[f"edx.special_exam.{kind}.attempt.created"] = _exam(kind, "initialized", submitted=False)
        table[f"edx.special_exam.{kind}.attempt.submitted"] = _exam(kind, "terminated", submitted=True)
    for family, plural in (("thread", "threads"), ("response", "comments"), ("comment", "comments")):
        created_extension = "thread_type" if family == "thread" else None
        table[f"edx.forum.{family}.created"] = _forum("posted", family=plural, extension=created_extension)
        for action in ("edited", "deleted", "reported", "unreported"):
            table[f"edx.forum.{family}.{action}"] = _forum(action, family=plural)
        if family != "comment":
            table[f"edx.forum.{family}.voted"] = _forum("voted", family=plural, extension="vote_value")
    table["edx.forum.thread.viewed"] = _forum("viewed", family="threads")
    return table


BUILDERS: dict[str, Builder] = _registry()


def _verb_of() -> dict[str, tuple[str, ...]]:
    verbs = {
        ("load_video", "edx.video.loaded"): ("initialized",),
        ("play_video", "edx.video.played"): ("played",),
        ("pause_video", "edx.video.paused"): ("paused",),
        ("stop_video", "edx.video.stopped"): ("terminated",),
        ("complete_video", "edx.video.completed"): ("completed",),
        ("seek_video", "edx.video.position.changed"): ("seeked",),
        (
            "speed_change_video",
            "show_transcript", "edx.video.transcript.shown", "edx.video.closed_captions.shown", "video_show_cc_menu",
            "hide_transcript", "edx.video.transcript.hidden", "edx.video.closed_captions.hidden", "video_hide_cc_menu",
        ): ("interacted",),
        tuple(name for name in BUILDERS if name.startswith("edx.ui.lms.")): ("navigated",),
        ("problem_check",): ("evaluated", "attempted"),  # a browser check is only attempted
        ("showanswer", "edx.problem.hint.demandhint_displayed"): ("asked",),
        ("edx.problem.completed",): ("completed",),
        ("edx.grades.problem.submitted",): ("attempted",),
        ("edx.course.enrollment.activated", "edx.course.enrollment.mode_changed"): ("registered",),
        ("edx.course.enrollment.deactivated",): ("unregistered",),
        ("edx.course.grade.passed.first_time", "edx.course.grade.now_passed"): ("passed",),
        ("edx.course.grade.now_failed",): ("failed",),
        ("edx.grades.course.grade_calculated", "edx.grades.subsection.grade_calculated"): ("earned",),
        ("edx.completion.block_completion.changed",): ("progressed",),
        tuple(name for name in BUILDERS if name.endswith(".attempt.created")): ("initialized",),
        tuple(name for name in BUILDERS if name.endswith(".attempt.submitted")): ("terminated",),
    }
    table = {name: shown for names, shown in verbs.items() for name in names}
    for name in BUILDERS:
        if name.startswith("edx.forum."):
            action = name.rsplit(".", 1)[1]
            table[name] = ("posted",) if action == "created" else (action,)
    return table


# The verbs each name's statements carry, for `rthub events` (tests/hub/translate/test_catalogue.py holds
# them to what the builders emit).
VERB_OF: dict[str, tuple[str, ...]] = _verb_of()
