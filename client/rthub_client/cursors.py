"""Cursor order: cursors are Redis stream ids `<milliseconds>-<sequence>` and compare as integer pairs."""

from __future__ import annotations


def cursor_key(cursor: str) -> tuple[int, int]:
    """The sort key of a cursor; `ValueError` when it is not `<int>-<int>`."""
    milliseconds, _, sequence = cursor.partition("-")
    return int(milliseconds), int(sequence or 0)


def is_cursor(value: object) -> bool:
    """Whether `value` is a cursor (a frame field may hold anything)."""
    if not isinstance(value, str):
        return False
    try:
        cursor_key(value)
    except ValueError:
        return False
    return True
