"""The plug-in's settings: `OPTIONS` of the `EVENT_TRACKING_BACKENDS` entry, else `RTHUB_*` variables.

The hub's own `hub.config.Settings` carries the same three fields, so the stream writer and the key
builder accept either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "rthub:"
DEFAULT_STREAM_MAXLEN = 1_000_000


class StreamSettings(Protocol):
    """What writing to the stream needs; satisfied by `PluginSettings` and `hub.config.Settings`."""

    @property
    def redis_prefix(self) -> str: ...

    @property
    def stream_maxlen(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PluginSettings:
    redis_url: str = DEFAULT_REDIS_URL
    redis_prefix: str = DEFAULT_PREFIX
    stream_maxlen: int = DEFAULT_STREAM_MAXLEN

    @classmethod
    def from_options(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> PluginSettings:
        """Options win over `RTHUB_REDIS_URL`, `RTHUB_REDIS_PREFIX` and `RTHUB_STREAM_MAXLEN`."""
        env = os.environ if environ is None else environ
        maxlen = options.get("stream_maxlen") or env.get("RTHUB_STREAM_MAXLEN") or DEFAULT_STREAM_MAXLEN
        return cls(
            redis_url=options.get("redis_url") or env.get("RTHUB_REDIS_URL") or DEFAULT_REDIS_URL,
            redis_prefix=options.get("redis_prefix") or env.get("RTHUB_REDIS_PREFIX") or DEFAULT_PREFIX,
            stream_maxlen=int(maxlen),
        )
