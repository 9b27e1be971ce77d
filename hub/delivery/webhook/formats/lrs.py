"""xAPI 1.0.3 into a Learning Record Store: `POST {endpoint}statements` with a JSON array of statements."""

from __future__ import annotations

from typing import Any

import orjson

from hub.delivery.webhook.formats.batch import BatchSender, records
from hub.delivery.webhook.outbox import Item

XAPI_VERSION = "1.0.3"


def statements_url(endpoint_url: str) -> str:
    """The Statements resource under an LRS endpoint (`https://lrs/xAPI/` -> `https://lrs/xAPI/statements`)."""
    return (endpoint_url if endpoint_url.endswith("/") else endpoint_url + "/") + "statements"


class LrsSender(BatchSender):
    def __init__(self, authorization: str) -> None:
        self.headers = {
            "authorization": authorization,
            "content-type": "application/json",
            "x-experience-api-version": XAPI_VERSION,
        }

    def body(self, items: list[Item]) -> bytes:
        """The batch's statements; one republished twice (same id, same content) is sent once.

        An LRS refuses a batch naming an id twice (400), while the same event published twice by an
        at-least-once LMS yields the same statement; a different statement under a known id still goes,
        so the LRS can say 409.
        """
        seen: dict[str, dict[str, Any]] = {}
        statements = []
        for statement in records(items):
            statement_id = statement.get("id")
            if statement_id is not None and seen.get(statement_id) == statement:
                continue
            if statement_id is not None:
                seen[statement_id] = statement
            statements.append(statement)
        return orjson.dumps(statements)
