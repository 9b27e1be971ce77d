"""Settings for every rthub process, read from `RTHUB_*` environment variables; CLI flags win."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from auth.addresses import PrivateAccess


class ConfigError(ValueError):
    """A setting has a value rthub cannot use."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def _seconds_list(value: str) -> tuple[float, ...]:
    try:
        items = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"expected comma-separated seconds, got {value!r}") from exc
    if not items or any(item <= 0 for item in items):
        raise ConfigError(f"expected positive seconds, got {value!r}")
    return items


MAX_WRITE_DELAY = 1.0
SIGNING_KEY_NAME = "signing-key.pem"
ENDPOINT_KEY_NAME = "endpoint.key"


def default_data_dir(environ: Mapping[str, str]) -> str:
    """`$XDG_DATA_HOME/rthub`, else `~/.local/share/rthub`: the same for every process of one user on one
    machine, whatever its working directory (a container needs `RTHUB_DATA_DIR` on a shared volume)."""
    base = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "rthub")


@dataclass(frozen=True, slots=True)
class Settings:
    """One place for every tunable; the field name upper-cased with `RTHUB_` is its variable."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "rthub:"
    lms_root_url: str = "http://localhost:18000"
    issuer: str = "http://localhost:8000"
    # Where key files live (absolute; default `default_data_dir()`): every process of a deployment must
    # see the same directory, and the registry refuses a process whose keys differ (`auth.keyring`).
    data_dir: str = ""
    # Overrides of one key file each (absolute); empty: `signing-key.pem` / `endpoint.key` in `data_dir`.
    signing_key_file: str = ""
    endpoint_key_file: str = ""
    webhook_allow_private: bool = False
    webhook_private_hosts: str = ""  # comma-separated host names that may resolve to private addresses
    # Refuse to start when Redis can lose rthub's data (`hub.redis_safety`); otherwise warn and go on.
    strict_redis: bool = False
    webhook_retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_disable_after: float = 5 * 86400.0
    webhook_handoff_margin: float = 5.0
    webhook_outbox_maxlen: int = 10_000
    webhook_deadletters_maxlen: int = 100_000
    stream_maxlen: int = 1_000_000
    send_queue_size: int = 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_max_sockets_per_client: int = 64
    # Set by `rthub serve --workers N` for its workers: the shared render stage's Unix socket (`hub.render_stage`).
    render_stage_socket: str = ""
    # How long the render stage may hold bundles that follow a write, so a worker wakes once for them.
    stage_write_delay: float = 0.005
    transformer_version: str = "rthub@0.1.0"
    audience: str = "rthub"
    token_lifetime: int = 3600
    secret_grace_period: int = 86400
    token_failure_limit: int = 20
    token_failure_ip_limit: int = 100
    token_failure_window: int = 300

    def __post_init__(self) -> None:
        if not self.data_dir:
            object.__setattr__(self, "data_dir", default_data_dir(os.environ))
        if not os.path.isabs(self.data_dir):
            raise ConfigError(f"RTHUB_DATA_DIR: expected an absolute path, got {self.data_dir!r}")
        for name in ("signing_key_file", "endpoint_key_file"):
            value = getattr(self, name)
            if value and not os.path.isabs(value):
                raise ConfigError(
                    f"RTHUB_{name.upper()}: expected an absolute path, got {value!r} (a relative path names another "
                    f"file in every working directory); leave it unset to keep the key in RTHUB_DATA_DIR"
                )
        if not (math.isfinite(self.stage_write_delay) and 0 <= self.stage_write_delay <= MAX_WRITE_DELAY):
            raise ConfigError(f"RTHUB_STAGE_WRITE_DELAY: expected 0 to {MAX_WRITE_DELAY:g} seconds, "
                              f"got {self.stage_write_delay!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment, then apply non-None overrides (CLI flags)."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = environ.get(f"RTHUB_{item.name.upper()}")
            if raw is not None:
                values[item.name] = _parse(item.name, raw, getattr(cls(), item.name))
        values.update({key: value for key, value in overrides.items() if value is not None})
        values.setdefault("data_dir", default_data_dir(environ))
        return cls(**values)

    @property
    def signing_key_path(self) -> str:
        return self.signing_key_file or os.path.join(self.data_dir, SIGNING_KEY_NAME)

    @property
    def endpoint_key_path(self) -> str:
        return self.endpoint_key_file or os.path.join(self.data_dir, ENDPOINT_KEY_NAME)

    @property
    def private_access(self) -> PrivateAccess:
        """Which webhook and endpoint hosts may be reached on private addresses."""
        return PrivateAccess.of(self.webhook_allow_private, self.webhook_private_hosts)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return _bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _seconds_list(raw)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"RTHUB_{name.upper()}: {exc}") from exc
    return raw
