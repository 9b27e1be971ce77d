"""What the auth side needs to know, as a protocol the hub's `hub.config.Settings` satisfies.

`auth` sits below `hub` (the hub imports it, never the reverse), so it names the settings it reads
instead of importing the hub's configuration.
"""

from __future__ import annotations

from typing import Protocol

from auth.addresses import PrivateAccess


class AuthSettings(Protocol):
    @property
    def redis_prefix(self) -> str: ...

    @property
    def issuer(self) -> str: ...

    @property
    def audience(self) -> str: ...

    @property
    def data_dir(self) -> str: ...

    @property
    def signing_key_file(self) -> str: ...

    @property
    def endpoint_key_file(self) -> str: ...

    @property
    def signing_key_path(self) -> str: ...

    @property
    def endpoint_key_path(self) -> str: ...

    @property
    def token_lifetime(self) -> int: ...

    @property
    def secret_grace_period(self) -> int: ...

    @property
    def private_access(self) -> PrivateAccess: ...

    @property
    def token_failure_limit(self) -> int: ...

    @property
    def token_failure_ip_limit(self) -> int: ...

    @property
    def token_failure_window(self) -> int: ...
