"""Settings for every rthub process, read from `RTHUB_*` environment variables; CLI flags win."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Settings:
    """One place for every tunable; the field name upper-cased with `RTHUB_` is its variable."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "rthub:"
    lms_root_url: str = "http://localhost:18000"
    issuer: str = "http://localhost:8000"
    signing_key_file: str = "rthub-signing-key.pem"
    endpoint_key_file: str = "rthub-endpoint.key"
    webhook_allow_private: bool = False
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
        return cls(**values)

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
