"""Client-credentials access tokens from `POST /oauth/token`, reused until shortly before they expire."""

from __future__ import annotations

import time

import httpx

from rthub_client.errors import RthubError, Unauthorized

STREAM_SCOPE = "events:read"
# Refresh when less than this share of a token's lifetime (at most a minute) is left.
REFRESH_SHARE = 0.5
REFRESH_MARGIN_MAX = 60.0


class TokenUnavailable(RthubError):
    """The token endpoint could not answer now (network, 429, 5xx): worth retrying after `retry_after`."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenSource:
    """One client's access token: fetched on demand, refreshed before `exp`, dropped on request."""

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, scope: str = STREAM_SCOPE, timeout: float = 10.0
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self.current: str | None = None
        self.fetches = 0
        self._refresh_at = 0.0

    async def get(self) -> str:
        """A token that is not about to expire, fetching one when needed."""
        if self.current is None or time.monotonic() >= self._refresh_at:
            await self.refresh()
        assert self.current is not None
        return self.current

    def invalidate(self) -> None:
        """Forget the current token (the hub refused it); the next `get` fetches a new one."""
        self.current = None

    async def refresh(self) -> str:
        """Fetch a new token; `Unauthorized` when the credentials are refused, `TokenUnavailable` otherwise."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(
                    self.token_url,
                    data={"grant_type": "client_credentials", "scope": self.scope},
                    auth=(self.client_id, self._secret),
                )
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable: {exc!r}") from exc
        if response.status_code in (400, 401, 403):
            raise Unauthorized(f"token endpoint refused client {self.client_id}: {_oauth_error(response)}")
        if response.status_code != 200:
            raise TokenUnavailable(
                f"token endpoint answered {response.status_code}", _retry_after(response.headers.get("retry-after"))
            )
        payload = response.json()
        lifetime = float(payload.get("expires_in") or 300)
        self.current = str(payload["access_token"])
        self._refresh_at = time.monotonic() + lifetime - min(REFRESH_MARGIN_MAX, lifetime * REFRESH_SHARE)
        self.fetches += 1
        return self.current


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return f"{body.get('error', response.status_code)}: {body.get('error_description', '')}".rstrip(": ")


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
