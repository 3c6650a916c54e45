"""The sync log: every run and every row that needed attention, in two tables of the user's database.

What data teams ask a reverse-ETL tool most is "which members failed last week, and why": a summary
XCom per task cannot answer that, a table can. ``<prefix>_runs`` gets one row per task try (written
when the run starts, completed when it ends), ``<prefix>_rows`` one row per source row whose outcome is
not ``unchanged``/``skipped`` (those are counted in the runs table; ``log_unchanged=True`` logs them
too). Rows are written in batches while the sync runs, never one insert per row.

Portable on purpose: the engine gets a DB-API connection factory and the driver's ``paramstyle`` from
the operator (any common.sql connection), creates the tables with plain SQL types when missing, adds
the columns a newer release needs, and refuses -- before the first request -- a column whose type
cannot hold what is written there. A failed write never undoes the sync's own work (state, ledger,
rejects): the log stops, and :meth:`SyncLog.finish` reports what is missing so the task can fail naming
the table. No Airflow import.

.. seealso:: ``docs/sync-log.md`` (schema, DDL for other databases, example queries).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

Kind = Literal["key", "text", "int", "float", "timestamp"]

#: The outcome columns of the runs table. A sync with an outcome not listed here gets its column added
#: on first use (``<prefix>_runs`` grows with the syncs; nothing is dropped).
OUTCOME_COLUMNS = (
    "created",
    "updated",
    "unchanged",
    "credited",
    "recorded",
    "entered",
    "exited",
    "deactivated",
    "deleted",
    "reactivated",
    "skipped",
    "rejected",
    "failed",
    "unknown",
)

KEY_COLUMNS: tuple[tuple[str, Kind], ...] = (
    ("dag_id", "key"),
    ("run_id", "key"),
    ("task_id", "key"),
    ("map_index", "int"),
    ("try_number", "int"),
)

RUN_COLUMNS: tuple[tuple[str, Kind], ...] = (
    *KEY_COLUMNS,
    ("partition_name", "key"),
    ("sync_kind", "key"),
    ("program_host", "key"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
    ("status", "key"),
    ("rows_read", "int"),
    ("requests", "int"),
    ("rate_limited", "int"),
    ("learned_rate", "float"),
    ("rejects_path", "text"),
    ("calls_path", "text"),
    ("error", "text"),
    *((name, "int") for name in OUTCOME_COLUMNS),
)

ROW_COLUMNS: tuple[tuple[str, Kind], ...] = (
    *KEY_COLUMNS,
    ("row_number", "int"),
    ("member", "text"),
    ("operation", "key"),
    ("outcome", "key"),
    ("http_status", "int"),
    ("error_code", "key"),
    ("message", "text"),
    ("column_name", "text"),
)

#: Outcomes that are counted in the runs table only (unless ``log_unchanged``).
QUIET = frozenset({"unchanged", "skipped"})
#: Longest message kept in the rows table (CrowdTwist's messages are a line; ours name row and column).
MAX_MESSAGE = 2000

#: SQL types per dialect; anything not listed uses "generic" (documented in docs/sync-log.md).
TYPES: dict[str, dict[Kind, str]] = {
    "generic": {
        "key": "VARCHAR(250)",
        "text": "VARCHAR(4000)",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "timestamp": "TIMESTAMP",
    },
    "postgresql": {
        "key": "VARCHAR(250)",
        "text": "TEXT",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "timestamp": "TIMESTAMP",
    },
    "sqlite": {"key": "TEXT", "text": "TEXT", "int": "INTEGER", "float": "REAL", "timestamp": "TIMESTAMP"},
}

#: Which declared types can hold each kind (matched as words in the lower-cased declared type).
_FAMILIES: dict[Kind, tuple[str, ...]] = {
    "key": ("char", "text", "clob", "string"),
    "text": ("char", "text", "clob", "string"),
    "int": ("int", "numeric", "decimal", "number"),
    "float": ("double", "real", "float", "numeric", "decimal", "number"),
    "timestamp": ("timestamp", "datetime", "char", "text", "string"),
}

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


class SyncLogError(Exception):
    """The sync log cannot be used as configured (names the table and the column)."""


@dataclass(frozen=True)
class RunKey:
    """One task try: what makes a run's rows its own (a retry is another try, never a duplicate)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1

    def values(self) -> tuple[Any, ...]:
        return (self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number)


@dataclass(frozen=True)
class LogRow:
    """One source row with its outcome, as the rows table keeps it."""

    row_number: int | None
    member: str | None
    operation: str
    outcome: str
    http_status: int | None = None
    error_code: str | None = None
    message: str | None = None
    column_name: str | None = None


def validate_prefix(prefix: Any) -> str:
    """``log_table_prefix`` becomes part of SQL identifiers: letters, digits and ``_`` only."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise SyncLogError(
            f"log_table_prefix must be letters, digits and '_' (not starting with a digit, at most 41 "
            f"characters), got {prefix!r}"
        )
    return prefix


def compatible(kind: Kind, declared: str) -> bool:
    """Whether a column declared as ``declared`` can hold a value of ``kind``."""
    text = declared.strip().lower()
    if not text:  # SQLite: a column without a type takes anything
        return True
    return any(word in text for word in _FAMILIES[kind])


class SyncLog:
    """The two tables for one run: opened before the first request, fed rows, finished once.

    :param connect: returns a new DB-API connection (the operator passes its common.sql hook's).
    :param dialect: ``sqlite``, ``postgresql`` or anything else (generic SQL types).
    :param paramstyle: the driver's DB-API ``paramstyle`` (``qmark``, ``format``, ``pyformat``,
        ``numeric``, ``named``).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        dialect: str,
        paramstyle: str,
        prefix: str,
        key: RunKey,
        sync_kind: str,
        program_host: str,
        partition: str | None = None,
        log_unchanged: bool = False,
        batch_size: int = 1000,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self._connect = connect
        self.dialect = dialect if dialect in TYPES else "generic"
        self.paramstyle = paramstyle
        self.prefix = validate_prefix(prefix)
        self.runs_table, self.rows_table = f"{prefix}_runs", f"{prefix}_rows"
        self.key = key
        self.sync_kind, self.program_host, self.partition = sync_kind, program_host, partition
        self.log_unchanged = log_unchanged
        self.batch_size = batch_size
        self.redact = redact
        self.problem: str | None = None
        self.rows_written = 0
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._con: Any = None
        self._run_columns = [name for name, _ in RUN_COLUMNS]

    # ------------------------------------------------------------------ set-up

    def open(self, started_at: dt.datetime | None = None) -> None:
        """Create or check both tables, clear this very try's rows (a re-run of one try id), and
        write the run's row as ``running``. Raises :class:`SyncLogError` on a schema conflict."""
        self._con = self._connect()
        try:
            self._ensure(self.runs_table, RUN_COLUMNS)
            self._ensure(self.rows_table, ROW_COLUMNS)
            where = " AND ".join(f"{name} = {self._mark(i)}" for i, (name, _) in enumerate(KEY_COLUMNS))
            cur = self._con.cursor()
            for table in (self.rows_table, self.runs_table):
                cur.execute(f"DELETE FROM {table} WHERE {where}", self._params(self.key.values()))
            values = {
                **dict(zip((n for n, _ in KEY_COLUMNS), self.key.values(), strict=True)),
                "partition_name": self.partition,
                "sync_kind": self.sync_kind,
                "program_host": self.program_host,
                "started_at": self._time(started_at or _now()),
                "status": "running",
            }
            self._insert(cur, self.runs_table, list(values), [tuple(values.values())])
            self._con.commit()
        except SyncLogError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SyncLogError(
                f"sync log table {self.runs_table}: cannot be written: {self._text(exc)}"
            ) from None

    def _ensure(self, table: str, columns: Sequence[tuple[str, Kind]]) -> None:
        existing = self._columns(table)
        types = TYPES[self.dialect]
        cur = self._con.cursor()
        if existing is None:
            body = ", ".join(f"{name} {types[kind]}" for name, kind in columns)
            cur.execute(f"CREATE TABLE {table} ({body})")
            self._con.commit()
            return
        for name, kind in columns:
            declared = existing.get(name)
            if declared is None:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {name} {types[kind]}")
            elif not compatible(kind, declared):
                raise SyncLogError(
                    f"sync log table {table}: column {name} is {declared}, which cannot hold "
                    f"{types[kind]} values; drop or rename the column, or set another log_table_prefix"
                )
        self._con.commit()

    def _columns(self, table: str) -> dict[str, str] | None:
        """``{column: declared type}`` of an existing table, ``None`` when it does not exist."""
        cur = self._con.cursor()
        if self.dialect == "sqlite":
            cur.execute(f"PRAGMA table_info({table})")
            found = {str(r[1]).lower(): str(r[2] or "") for r in cur.fetchall()}
        else:
            cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE LOWER(table_name) = "
                + self._mark(0),
                self._params([table.lower()]),
            )
            found = {str(r[0]).lower(): str(r[1] or "") for r in cur.fetchall()}
        return found or None

    # ------------------------------------------------------------------ rows

    def add(self, row: LogRow) -> None:
        """Buffer one row (quiet outcomes only with ``log_unchanged``); written ``batch_size`` at a time."""
        if row.outcome in QUIET and not self.log_unchanged:
            return
        message = self.redact(row.message)[:MAX_MESSAGE] if row.message else row.message
        values = (
            *self.key.values(),
            row.row_number,
            row.member,
            row.operation,
            row.outcome,
            row.http_status,
            row.error_code,
            message,
            row.column_name,
        )
        with self._lock:
            if self.problem is not None or self._con is None:
                return
            self._pending.append(values)
            if len(self._pending) >= self.batch_size:
                self._flush()

    def add_all(self, rows: Iterable[LogRow]) -> None:
        for row in rows:
            self.add(row)

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self._insert(self._con.cursor(), self.rows_table, [n for n, _ in ROW_COLUMNS], batch)
            self._con.commit()
            self.rows_written += len(batch)
        except Exception as exc:  # the sync goes on; finish() says what is missing
            self.problem = f"sync log table {self.rows_table}: rows could not be written: {self._text(exc)}"
            log.error("%s; the sync continues, the task will fail at the end", self.problem)
            _rollback(self._con)

    # ------------------------------------------------------------------ end

    def finish(
        self,
        summary: Mapping[str, Any],
        *,
        status: str,
        error: str | None = None,
        finished_at: dt.datetime | None = None,
    ) -> str | None:
        """Write the remaining rows and complete the run's row. Returns what could not be written."""
        if self._con is None:
            return self.problem
        with self._lock:
            self._flush()
        counts = {str(k): int(v) for k, v in dict(summary.get("counts", {})).items()}
        try:
            self._add_outcome_columns(counts)
            values: dict[str, Any] = {
                "finished_at": self._time(finished_at or _now()),
                "status": status,
                "rows_read": int(summary.get("rows_read", 0)),
                "requests": int(summary.get("requests_sent", 0)),
                "rate_limited": _rate_limited(summary),
                "learned_rate": _learned_rate(summary),
                "rejects_path": _str(summary.get("rejects_path")),
                "calls_path": _str(summary.get("calls_path")),
                "error": self._cut(error or self.problem),
                **{name: counts.get(name, 0) for name in self._run_outcomes(counts)},
            }
            sets = ", ".join(f"{name} = {self._mark(i)}" for i, name in enumerate(values))
            where = " AND ".join(
                f"{name} = {self._mark(len(values) + i)}" for i, (name, _) in enumerate(KEY_COLUMNS)
            )
            params = self._params([*values.values(), *self.key.values()])
            self._con.cursor().execute(f"UPDATE {self.runs_table} SET {sets} WHERE {where}", params)
            self._con.commit()
        except Exception as exc:
            _rollback(self._con)
            missing = f"sync log table {self.runs_table}: the run could not be completed: {self._text(exc)}"
            self.problem = f"{self.problem}; {missing}" if self.problem else missing
        finally:
            self.close()
        return self.problem

    def _run_outcomes(self, counts: Mapping[str, int]) -> list[str]:
        return [*OUTCOME_COLUMNS, *(name for name in counts if name not in OUTCOME_COLUMNS)]

    def _add_outcome_columns(self, counts: Mapping[str, int]) -> None:
        new = [name for name in counts if name not in OUTCOME_COLUMNS and _PREFIX.match(name)]
        if not new:
            return
        existing = self._columns(self.runs_table) or {}
        cur = self._con.cursor()
        for name in new:
            if name not in existing:
                cur.execute(f"ALTER TABLE {self.runs_table} ADD COLUMN {name} {TYPES[self.dialect]['int']}")
        self._con.commit()

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            with contextlib.suppress(Exception):  # a broken connection must not hide the real problem
                con.close()

    # ------------------------------------------------------------------ SQL helpers

    def _insert(self, cur: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join(self._mark(i) for i in range(len(columns)))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        cur.executemany(sql, [self._params(r) for r in rows])

    def _mark(self, i: int) -> str:
        style = self.paramstyle
        if style == "qmark":
            return "?"
        if style in ("format", "pyformat"):
            return "%s"
        if style == "numeric":
            return f":{i + 1}"
        if style == "named":
            return f":p{i}"
        raise SyncLogError(f"sync log: DB-API paramstyle {style!r} is not supported")

    def _params(self, values: Sequence[Any]) -> Any:
        return {f"p{i}": v for i, v in enumerate(values)} if self.paramstyle == "named" else tuple(values)

    def _time(self, when: dt.datetime) -> Any:
        """UTC, without zone (portable ``TIMESTAMP``); SQLite gets ISO text (no adapter warnings)."""
        naive = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return naive.isoformat(sep=" ", timespec="milliseconds") if self.dialect == "sqlite" else naive

    def _text(self, exc: BaseException) -> str:
        return self.redact(f"{type(exc).__name__}: {exc}")[:500]

    def _cut(self, text: str | None) -> str | None:
        return self.redact(text)[:MAX_MESSAGE] if text else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _rate_limited(summary: Mapping[str, Any]) -> int:
    limit = summary.get("rate_limit") or {}
    return int(limit.get("rate_limited", 0) or 0) if isinstance(limit, Mapping) else 0


def _learned_rate(summary: Mapping[str, Any]) -> float | None:
    limit = summary.get("rate_limit") or {}
    value = limit.get("learned_requests_per_minute") if isinstance(limit, Mapping) else None
    return float(value) if value is not None else None


def _rollback(con: Any) -> None:
    with contextlib.suppress(Exception):  # a dead connection cannot roll back; nothing more to do
        con.rollback()
