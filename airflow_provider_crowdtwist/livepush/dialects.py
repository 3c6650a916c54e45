"""The two warehouses the loader speaks, each with its own column types and its own upsert.

Both upserts are ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE``: the WHERE keeps the newest
version, so loading files in any order, or the same file twice, ends in the same table. Profiles are
ordered by ``(date_last_updated, received_at)`` (CrowdTwist's own "last updated", then arrival at the
receiver for two versions within one second); activities by ``received_at`` (a resent completion).
SQLite has no timestamp type: timestamps are stored as ISO 8601 text in UTC with a fixed width, which
SQLite's date functions read and which sorts like the time it names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_crowdtwist.livepush.columns import INT, JSON, NUM, TEXT, TS, Column

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def check_table_name(table: str) -> None:
    if not isinstance(table, str) or not _TABLE.match(table):
        raise ValueError(
            f"table: {table!r} is not a table name (letters, digits, _; optionally schema.table)"
        )


def quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    types: dict[str, str]
    json_value: str  # how a JSON parameter is written in VALUES
    oldest_timestamp: str  # what a missing date_last_updated compares as
    # What a row carries for "no value". SQLite stores a NaN double as NULL, and CPython's sqlite3
    # binds a float ~10x faster than None (see rows.py); PostgreSQL keeps NaN as a number: None there.
    null: Any = None

    def create_table(self, table: str, columns: Sequence[Column]) -> str:
        cols = ",\n  ".join(
            f'"{c.name}" {self.types[c.kind]}' + (" PRIMARY KEY" if i == 0 else "")
            for i, c in enumerate(columns)
        )
        return f"CREATE TABLE IF NOT EXISTS {quote(table)} (\n  {cols}\n)"

    def upsert(self, table: str, columns: Sequence[Column], feed: str) -> str:
        names = ", ".join(f'"{c.name}"' for c in columns)
        values = ", ".join(self.json_value if c.kind == JSON else self.placeholder for c in columns)
        key = columns[0].name
        sets = ", ".join(f'"{c.name}" = excluded."{c.name}"' for c in columns[1:])
        target = self.target_alias(table)
        if feed == "profile":
            old = self.oldest_timestamp
            newer = (
                f'(COALESCE(excluded."date_last_updated", {old}), excluded."received_at") >= '
                f'(COALESCE({target}."date_last_updated", {old}), {target}."received_at")'
            )
        else:
            newer = f'excluded."received_at" >= {target}."received_at"'
        return (
            f"INSERT INTO {self.insert_target(table)} ({names}) VALUES ({values}) "
            f'ON CONFLICT ("{key}") DO UPDATE SET {sets} WHERE {newer}'
        )

    def insert_target(self, table: str) -> str:
        return quote(table) if self.name == "sqlite" else f"{quote(table)} AS tgt"

    def target_alias(self, table: str) -> str:
        # SQLite names the target table itself in DO UPDATE; PostgreSQL takes an alias (schema.table)
        return quote(table) if self.name == "sqlite" else "tgt"

    def timestamp_out(self, value: datetime) -> Any:
        """A timestamp as this warehouse takes it: a datetime, or for SQLite fixed-width UTC text."""
        if self.name == "sqlite":
            return value.isoformat(" ", "microseconds")  # positional: keywords cost as much as formatting
        return value


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    types={INT: "INTEGER", NUM: "NUMERIC", TEXT: "TEXT", TS: "TEXT", JSON: "TEXT"},
    json_value="?",
    oldest_timestamp="''",
    null=float("nan"),
)
POSTGRES = Dialect(
    name="postgres",
    placeholder="%s",
    types={INT: "BIGINT", NUM: "NUMERIC", TEXT: "TEXT", TS: "TIMESTAMPTZ", JSON: "JSONB"},
    json_value="CAST(%s AS JSONB)",
    oldest_timestamp="'-infinity'::timestamptz",
)
DIALECTS = {"sqlite": SQLITE, "postgres": POSTGRES, "postgresql": POSTGRES}


def dialect_for(name: str) -> Dialect:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise ValueError(
            f"no live push upsert for a {name!r} connection; supported: sqlite, postgres"
        ) from None
