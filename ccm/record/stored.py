"""Reading stored values as untrusted: what verify reads is checked for its type first.

SQLite keeps whatever a tamperer writes into a column (text in an integer
column, a blob in a text column, ``'not a date'`` as a timestamp), and
SQLAlchemy's own conversions fail on such a value with an exception that
stops the whole read. Verify therefore selects columns raw (:func:`raw`) and
converts each value here: a value of the wrong type becomes
:class:`Unreadable`, whose text says what the column holds instead, so the
check reports it as a problem of that row and goes on with the rest.

The text never repeats the stored value: it may be anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import NullType

__all__ = ["Unreadable", "blob", "held", "moment", "optional_text", "raw", "text", "whole"]


class Unreadable(ValueError):
    """A stored value is not of its column's type (the message: what it holds instead)."""


def raw(column: sa.ColumnElement[Any], label: str) -> sa.ColumnElement[Any]:
    """``column`` selected as the driver returns it, without SQLAlchemy's conversion."""
    return sa.type_coerce(column, NullType()).label(label)


def held(value: object) -> str:
    """What kind of value ``value`` is, in words (never the value itself)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if isinstance(value, str):
        return "text" if value else "empty text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a fraction"
    if isinstance(value, datetime):
        return "a timestamp"
    return f"a {type(value).__name__}"


def text(value: object) -> str:
    """A text column's value."""
    if not isinstance(value, str):
        raise Unreadable(f"holds {held(value)}, not text")
    return value


def optional_text(value: object) -> str | None:
    """A nullable text column's value."""
    return None if value is None else text(value)


def whole(value: object) -> int:
    """An integer column's value (a boolean or a fraction is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unreadable(f"holds {held(value)}, not a whole number")
    return value


def moment(value: object) -> datetime:
    """A timestamp column's value: a datetime (PostgreSQL) or ISO 8601 text (SQLite).

    Parsed as SQLAlchemy parses SQLite's text, so the hashes see the same value.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise Unreadable("holds text that is not a timestamp") from None
    raise Unreadable(f"holds {held(value)}, not a timestamp")


def blob(value: object) -> bytes:
    """A binary column's value."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise Unreadable(f"holds {held(value)}, not bytes")
    return bytes(value)
