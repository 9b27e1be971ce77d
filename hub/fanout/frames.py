"""The JSON frames of `WS /v1/events` and of webhook bodies, as the code builds and reads them.

The fan-out renders `event` and `gap` frames, the endpoint sends `welcome` and reads `subscribe`, a
batching webhook posts `batch`; the AsyncAPI document (`hub.delivery.asyncapi`) is generated from
these types, so a field cannot be added to a frame without appearing there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from auth.clients import GrantRule, Translator

Cursor = Annotated[
    str,
    {
        "pattern": r"^[0-9]{1,20}(-[0-9]{1,20})?$",
        "description": "opaque position in the event stream; cursors increase in stream order (today a Redis "
        "stream id, <milliseconds>-<sequence>)",
        "examples": ["1718000000000-0"],
    },
]


class WelcomeFrame(TypedDict):
    """The server's first frame on a socket it accepted."""

    type: Literal["welcome"]
    client_id: str
    translator: Translator
    cursor: NotRequired[
        Annotated[
            Cursor,
            {"description": "where this socket's live stream starts: every event after it that the client may "
             "see is sent on this socket unless it drops; a client with no cursor of its own resumes from it "
             "after a drop before its first event (absent while the hub has not reached the stream yet)"},
        ]
    ]


class EventFrame(TypedDict):
    """One event the client may see, translated for it. Also the body of a webhook without batching."""

    type: Literal["event"]
    cursor: Cursor
    event_type: Annotated[str, {"description": "the Open edX event name, e.g. problem_check"}]
    data: Annotated[
        dict[str, Any] | list[dict[str, Any]],
        {"description": "an xAPI 1.0.3 statement (a list when one LMS event makes several) or a Caliper 1.2 event"},
    ]


# `from` is a keyword, hence the functional form.
GapFrame = TypedDict(
    "GapFrame",
    {
        "type": Literal["gap"],
        "from": Annotated[str, {"description": "the cursor the client resumed from"}],
        "resume_from": Annotated[str, {"description": "the oldest cursor still retained; everything after it follows"}],
    },
)
GapFrame.__doc__ = "Sent before a catch-up when events after the client's cursor have left the stream's retention."


class SubscribeFrame(TypedDict):
    """The client's only frame: narrow the stream, and/or resume from a cursor."""

    type: Literal["subscribe"]
    filter: NotRequired[
        Annotated[
            GrantRule | list[GrantRule] | None,
            {"description": "one rule or a list of rules; can only narrow the client's grant; null or {} for none"},
        ]
    ]
    resume_from: NotRequired[Annotated[Cursor, {"description": "replay what the client missed since this cursor"}]]


class BatchBody(TypedDict):
    """A webhook body when the client's batching is on (`webhook_batch_max` > 1): events in stream order."""

    type: Literal["batch"]
    events: list[EventFrame]


SERVER_FRAMES = (WelcomeFrame, EventFrame, GapFrame)
CLIENT_FRAMES = (SubscribeFrame,)
