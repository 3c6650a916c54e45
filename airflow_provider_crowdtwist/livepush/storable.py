"""Why a warehouse refused a row: the column whose value it cannot store, found after the refusal.

The fast path binds rows as they are and lets the database check them. When it refuses one (an
integer beyond 64 bits, a lone surrogate, a NUL character in PostgreSQL text), the loader inserts
that file's rows one at a time and asks this module which column of the refused row is at fault, so
the reject names it. Nothing here runs for a row the database took.

Integers beyond 64 bits: PostgreSQL's NUMERIC holds them exactly (points and other number columns
load them as sent); BIGINT cannot, nor can SQLite, whose NUMERIC keeps such a number only as a
15-digit REAL. Those are rejected rather than rounded (values are stored as sent or rejected).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_crowdtwist.livepush.columns import INT, JSON, NUM, Column

INT64 = range(-(2**63), 2**63)
# DB-API exception classes (by name: no driver is imported) that mean "this row", not "this connection"
ROW_ERRORS = ("DataError", "IntegrityError")


def is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` is about the row's values (so the row is rejected), not the connection."""
    if isinstance(exc, (OverflowError, UnicodeError, ValueError, TypeError)):
        return True
    return any(cls.__name__ in ROW_ERRORS for cls in type(exc).__mro__)


def unstorable(dialect: str, columns: Sequence[Column], row: Sequence[Any]) -> str | None:
    """``column <name> (<source>): <why>`` for the first value ``dialect`` cannot store, or None."""
    for column, value in zip(columns, row, strict=False):
        why = _why(dialect, column, value)
        if why is not None:
            label = f" ({column.label})" if column.source else ""
            return f"column {column.name}{label}: {why}"
    return None


def _why(dialect: str, column: Column, value: Any) -> str | None:
    beyond = type(value) is int and value not in INT64
    if beyond and (column.kind == INT or (column.kind == NUM and dialect == "sqlite")):
        where = "a BIGINT column" if dialect == "postgres" else "SQLite (only as a rounded REAL)"
        digits = len(str(abs(value)))
        return f"integer beyond 64 bits ({digits} digits) cannot be stored exactly in {where}"
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            bad = value[exc.start : exc.end].encode("unicode_escape").decode()
            return f"holds a lone UTF-16 surrogate ({bad}), which is not a character"
        if dialect == "postgres" and ("\x00" in value or (column.kind == JSON and "\\u0000" in value)):
            return "holds a NUL character (\\u0000), which PostgreSQL text and JSONB cannot hold"
    return None
