"""Open edX identifiers as the reference translator spells them: course and block IRIs, times, durations."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from hub.translate.base import Source, TranslationError

_BROWSER_INPUT = re.compile(r"input_([0-9a-zA-Z]+)_\d+_\d+")

# UUID5 namespace of every statement and event id rthub issues (uuid5(NAMESPACE_URL, "urn:rthub:output-id")).
OUTPUT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rthub:output-id")
_NAMESPACE_BYTES = OUTPUT_ID_NAMESPACE.bytes


def content_id(body: Mapping[str, Any]) -> str:
    """The UUID5 of an output's canonical form (its JSON with sorted keys, without its id).

    Record stores de-duplicate by id and refuse (409) a different statement under a known id: an id
    over the whole content is the same on every redelivery of an event, and differs whenever any field
    of the output differs. Computed as `uuid.uuid5` does, formatted by hand (`uuid.UUID` costs ~6 µs).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest[:16].hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def course_url(root: str, course_id: str) -> str:
    return f"{root}/course/{course_id}"


def block_url(root: str, usage_key: str) -> str:
    return f"{root}/xblock/{usage_key}"


@lru_cache(maxsize=65_536)
def usage_key(course_id: str, block_type: str, block_id: str) -> str:
    """The usage key of a block in a course, for the course key formats the LMS emits."""
    for course_prefix, block_prefix in (("course-v1:", "block-v1:"), ("ccx-v1:", "ccx-block-v1:")):
        if course_id.startswith(course_prefix):
            return f"{block_prefix}{course_id[len(course_prefix) :]}+type@{block_type}+block@{block_id}"
    parts = course_id.split("/")
    if len(parts) == 3:
        return f"i4x://{parts[0]}/{parts[1]}/{block_type}/{block_id}"
    raise TranslationError(f"unrecognised course key {course_id[:80]!r}")


def video_url(src: Source) -> str:
    return block_url(src.root, usage_key(src.course_id(), "video", src.need_str("id")))


def browser_problem_url(src: Source) -> str:
    """The block a browser-side `problem_check` is about.

    The reference reads it from the page the learner was on: a courseware page names the unit in
    `activate_block_id`; otherwise the answer inputs (`input_<block>_2_1=...`) name the problem.
    Only that block id is taken from the referer or page; neither URL is passed on.
    """
    referer = src.context.get("referer") or src.context.get("page") or ""
    if isinstance(referer, str) and "/xblock/" not in referer:
        found = parse_qs(urlsplit(referer).query).get("activate_block_id")
        if found:
            return block_url(src.root, found[0])
    raw = src.event.get("data")
    match = _BROWSER_INPUT.search(raw) if isinstance(raw, str) else None
    if match is None:
        raise TranslationError(f"{src.name}: cannot tell the problem from `data` or the page")
    return block_url(src.root, usage_key(src.course_id(), "problem", match.group(1)))


def utc_timestamp(value: str) -> str:
    """ISO 8601 in UTC with a `+00:00` offset, as xAPI statements from the reference carry."""
    if value.endswith("+00:00"):
        return value
    return _parse(value).isoformat()


def caliper_time(value: str) -> str:
    """ISO 8601 UTC with milliseconds (truncated, as the reference) and a `Z`, as Caliper 1.2 requires."""
    body = value[:-6] if value.endswith("+00:00") else value[:-1] if value.endswith("Z") else None
    if body is not None and len(body) >= 19 and body[10] == "T" and body[4] == body[7] == "-":
        if len(body) == 19:
            return f"{body}.000Z"
        if body[19] == "." and body[20:].isdigit():
            return f"{body[:19]}.{body[20:23]:0<3}Z"
    moment = _parse(value)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@lru_cache(maxsize=16_384)
def iso_duration(seconds: float) -> str:
    """Caliper spelling of a duration (`PT3M14.407359S`, `P0D` for zero)."""
    micros_total = round(seconds * 1_000_000)
    if micros_total <= 0:
        return "P0D"
    whole, micros = divmod(micros_total, 1_000_000)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    if hours or minutes or secs or micros:
        text += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        if secs or micros:
            text += f"{secs}.{micros:06d}".rstrip("0") + "S" if micros else f"{secs}S"
    return text


def _parse(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise TranslationError(f"timestamp is not ISO 8601: {str(value)[:40]!r}") from exc
    if moment.tzinfo is None:
        raise TranslationError("timestamp has no time zone")
    return moment.astimezone(UTC)
