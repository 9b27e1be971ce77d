"""Typed failures the SDK raises instead of retrying: retrying them could never succeed."""

from __future__ import annotations


class RthubError(Exception):
    """Base of every error the SDK raises on purpose."""


class Unauthorized(RthubError):
    """The credentials or the token were refused, and a fresh token did not help (token endpoint 4xx, 4401)."""


class Forbidden(RthubError):
    """The hub closed the stream with 4403: the client was revoked, or its rights changed or are missing."""


class ProtocolError(RthubError):
    """The hub refused what the SDK sent (1003, 1008, 1009: e.g. a bad filter) or sent something unexpected."""


class InvalidWebhook(RthubError):
    """A webhook's signature, timestamp or headers do not check out: answer 4xx and do not process it."""
