"""Structured logs: one JSON object per line, with the event cursor and client id when a record has them.

Log calls pass them as `extra={"cursor": ..., "client_id": ...}`. Nothing else from an event is
logged: no learner identity, no payload, no secret. Lines rthub does not write itself (uvicorn's
access log prints request paths with their query strings, `?access_token=eyJ...` included) go
through `RedactingFilter` on every handler, in both the JSON and the text format.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import uvicorn.config

CONTEXT_FIELDS = ("cursor", "client_id")
REDACTED = "[redacted]"
# Credentials as they appear in request lines and headers: query or form parameters, HTTP
# authorization values, and anything shaped like a JWT or a webhook signing secret, wherever it is.
_CREDENTIALS = re.compile(
    r"(?P<param>(?:access_token|refresh_token|id_token|token|client_secret|client_assertion|secret|password)"
    r"(?:=|%3D))[^&\s\"'#]*"
    r"|(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|whsec_[A-Za-z0-9+/=]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by `[redacted]`."""
    return _CREDENTIALS.sub(_replacement, text)


def _replacement(match: re.Match[str]) -> str:
    return (match["param"] or match["scheme"] or "") + REDACTED


class RedactingFilter(logging.Filter):
    """Redact credentials in a record's message and string arguments, keeping its shape (uvicorn's access
    formatter reads the arguments by position)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: redact(arg) if isinstance(arg, str) else arg for key, arg in record.args.items()}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's own loggers and rthub's, all through the JSON formatter on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"redact": {"()": RedactingFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"], "stream": "ext://sys.stderr"
            }
        },
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "rthub", "hub", "auth")
        },
    }


def text_log_config() -> dict[str, Any]:
    """uvicorn's own text format, with credentials redacted on every handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactingFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
