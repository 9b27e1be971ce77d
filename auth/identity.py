"""Who is on the other end of a connection, and how authentication says so or refuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from auth.closecodes import CloseCode


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """An authenticated consumer: what it may see (grant) and how it wants it (translator)."""

    client_id: str
    consumer_type: str
    translator: str
    grant: list[dict[str, Any]] = field(default_factory=list)
    delivery: str = "websocket"
    scopes: tuple[str, ...] = ()
    actor: str = "anonymous"  # `auth.clients.actor_space`: whose ids its actors are
    # When the credential behind this identity stops being valid (unix seconds); not part of equality,
    # so a client whose rights did not change compares equal across tokens.
    expires_at: float | None = field(default=None, compare=False)


class AuthError(Exception):
    """Authentication refused; `close_code` is the WebSocket close code the contract names."""

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> ClientIdentity:
        """Return the identity behind a bearer token or raise `AuthError`."""
        ...
