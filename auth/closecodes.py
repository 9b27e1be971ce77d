"""The WebSocket close codes of `WS /v1/events`, each with what it means: the one list of them.

The hub and `auth` close sockets with these; `docs/contract.md` and the SDK's docs refer here (the
SDK, its own distribution, keeps a copy of the codes it acts on, checked equal by
`tests/client/test_closecodes.py`). It lives in `auth`, the lowest layer that closes sockets, so that
`auth` need not import `hub`.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    UNSUPPORTED_DATA = 1003
    ABNORMAL = 1006
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    SEND_FAILED = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4008
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS: dict[CloseCode, str] = {
    CloseCode.UNSUPPORTED_DATA: "the client sent a binary frame",
    CloseCode.ABNORMAL: "never sent: what a client sees when the connection dropped without a close frame",
    CloseCode.POLICY_VIOLATION: "malformed or too many client frames, a bad `resume_from`, a filter over the "
    "limits or changed too often, or too many sockets for one client",
    CloseCode.MESSAGE_TOO_BIG: "a client frame over 64 KiB (closed by the WebSocket server)",
    CloseCode.SEND_FAILED: "the hub could not write to the socket; reconnect with the last cursor",
    CloseCode.SERVICE_RESTART: "the hub is shutting down; reconnect with the last cursor",
    CloseCode.TRY_AGAIN_LATER: "Redis (the client registry or the stream) unavailable; retry later",
    CloseCode.SLOW_CONSUMER: "the socket's bounded queue stayed full; reconnect with the last cursor",
    CloseCode.UNAUTHENTICATED: "bad, expired or revoked token; fetch a new one",
    CloseCode.FORBIDDEN: "the client has no right to the stream (revoked, or its rights changed); do not retry as is",
}
