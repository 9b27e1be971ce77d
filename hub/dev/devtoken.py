"""A one-run token for `rthub demo` in its in-process mode, where there is no Redis for OAuth clients.

Never used by `rthub serve`; the identity it yields sees every event.
"""

from __future__ import annotations

import hmac

from auth.identity import CLOSE_UNAUTHENTICATED, AuthError, ClientIdentity


class DevTokenAuthenticator:
    def __init__(self, token: str, translator: str = "xapi") -> None:
        if not token:
            raise ValueError("a development token must not be empty")
        self._token = token
        self._identity = ClientIdentity(
            client_id="dev", consumer_type="other", translator=translator, grant=[{}], scopes=("events:read",)
        )

    async def authenticate(self, token: str) -> ClientIdentity:
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise AuthError(CLOSE_UNAUTHENTICATED, "invalid token")
        return self._identity
