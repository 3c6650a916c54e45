"""The credit ledger's file: its schema, where it lives, and opening it -- created whole, checked, or refused.

Schema (inspect it with ``sqlite3 LEDGER "select state, count(*) from credits group by state"``)::

    CREATE TABLE credits (
        dedupe_key  TEXT PRIMARY KEY,   -- the dedupe_key_column value, or sha256 of the credit
        state       TEXT NOT NULL,      -- pending | credited | unknown | failed
        user_id     TEXT,               -- the member identifier the credit was sent for
        activity_id TEXT,
        num_points  INTEGER,            -- NULL: the activity's default points
        run_id      TEXT,               -- the run that last wrote the row
        updated_at  TEXT NOT NULL,      -- ISO 8601 UTC
        message     TEXT,               -- why a key is failed/unknown; the API's answer
        id_type     TEXT,               -- (v2) how user_id identifies the member
        request     TEXT,               -- (v2) JSON of the credit as sent: resent identically if needed
        attempts    INTEGER NOT NULL DEFAULT 0,  -- (v2) how many times it was sent
        first_sent_at REAL,             -- (v2) epoch seconds of the first send (history look-back)
        last_sent_at  REAL,             -- (v2) epoch seconds of the last send
        unknown_since REAL,             -- (v2) epoch seconds it became 'unknown' (settle delay from here)
        checks      INTEGER NOT NULL DEFAULT 0   -- (v2) activity-history look-ups made for it
    );

A version-1 ledger gets the new columns when it is opened (``ALTER TABLE ... ADD COLUMN``); its old
rows have no ``request``, so an old ``unknown`` key is verified from its source row when that is read
again, and otherwise stays ``unknown``.

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/ledger_file.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from airflow_provider_crowdtwist.sync.file_guard import BrokenFileError, is_corruption, quick_check
from airflow_provider_crowdtwist.sync.partition import Partition, check_layout
from airflow_provider_crowdtwist.sync.paths import FileInUseError

__all__ = [
    "SCHEMA_VERSION",
    "SELECT",
    "LedgerBrokenError",
    "LedgerError",
    "LedgerInUseError",
    "broken_message",
    "init_ledger",
    "ledger_location",
    "open_db",
]

SCHEMA_VERSION = 2

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS credits (
    dedupe_key  TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'credited', 'unknown', 'failed')),
    user_id     TEXT,
    activity_id TEXT,
    num_points  INTEGER,
    run_id      TEXT,
    updated_at  TEXT NOT NULL,
    message     TEXT,
    id_type     TEXT,
    request     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_sent_at REAL,
    last_sent_at  REAL,
    unknown_since REAL,
    checks      INTEGER NOT NULL DEFAULT 0
);
"""
INDEX_SQL = "CREATE INDEX IF NOT EXISTS credits_state ON credits (state)"

COLUMNS = ("dedupe_key", "state", "user_id", "activity_id", "num_points", "run_id", "updated_at", "message")
#: Columns added by schema version 2 (what verifying an ``unknown`` credit needs), with their SQL types.
V2_COLUMNS = {
    "id_type": "TEXT",
    "request": "TEXT",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "first_sent_at": "REAL",
    "last_sent_at": "REAL",
    "unknown_since": "REAL",
    "checks": "INTEGER NOT NULL DEFAULT 0",
}
SELECT = f"SELECT {', '.join((*COLUMNS, *V2_COLUMNS))} FROM credits"


class LedgerError(RuntimeError):
    """The ledger cannot be opened, read or written; crediting must not go on without it."""


class LedgerInUseError(LedgerError, FileInUseError):
    """Another running sync holds the ledger; two writers would defeat the exactly-once guarantee."""


class LedgerBrokenError(BrokenFileError, LedgerError):
    """The ledger exists but lost its content (empty, truncated, corrupt): refused, never taken as new.

    Taking it for a new ledger would credit every key again. The message names the file, what is
    wrong and the two ways out: restore it, or ``rebuild_ledger=True``.
    """


def broken_message(location: str, reason: str) -> str:
    """The refusal of a broken ledger: the file, what is wrong, why it is not taken as new, the way out."""
    return (
        f"the credit ledger {location} {reason}. A ledger that lost its content is not taken for a new "
        "one (that would credit every key again): nothing was sent. Restore the file from a backup, or "
        "run once with rebuild_ledger=True: the broken file is kept beside it as "
        f"{location}.broken-<UTC time>, and before a credit is sent its member's activity history is "
        "read and every credit found there (by the dedupe key each credit carries in extra_data) is "
        "recorded credited, not sent again"
    )


def init_ledger(db: sqlite3.Connection) -> None:
    """The schema of a new ledger file, written before the file is put in place (file_guard)."""
    db.executescript(SCHEMA_SQL)
    db.execute(INDEX_SQL)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.commit()


def open_db(path: str, location: str, *, fresh: bool) -> sqlite3.Connection | str:
    """The ledger at ``path`` opened (WAL) and upgraded; or, as a string, what is wrong with it.

    ``fresh``: the file was just created whole by this run (or is ``:memory:``): nothing to check.
    Otherwise SQLite's quick check reads every page and a file without tables is refused, before the
    schema is touched. A foreign SQLite file (a ``credits`` table of another shape) or an error that is
    not corruption (busy, I/O) raises :class:`LedgerError` naming the file.
    """
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"cannot open the credit ledger {location}: {exc}") from exc
    try:
        if not fresh:  # checked before anything is written: a refused file stays exactly as it was
            problem = quick_check(conn)
            if problem is None and not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                problem = "holds no tables"
            if problem is not None:
                conn.close()
                return problem
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA_SQL)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(credits)")}
        missing = sorted(set(COLUMNS) - columns)
        if missing:
            raise LedgerError(
                f"cannot open the credit ledger {location}: its 'credits' table lacks the "
                f"column(s) {', '.join(missing)}: not a credit ledger; give ledger_path a file of its own"
            )
        for name, kind in V2_COLUMNS.items():  # a version-1 ledger: add what verification needs
            if name not in columns:
                conn.execute(f"ALTER TABLE credits ADD COLUMN {name} {kind}")
        conn.execute(INDEX_SQL)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS run_keys (dedupe_key TEXT PRIMARY KEY)")
    except sqlite3.DatabaseError as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        if is_corruption(exc):
            return f"is corrupt (SQLite: {exc})"
        raise LedgerError(f"cannot open the credit ledger {location}: {exc}") from exc
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        raise
    return conn


def ledger_location(location: Any, partition: Partition | None) -> Any:
    """Where this partition's credit ledger lives, after :func:`check_layout` (before any request)."""
    check_layout(location, partition)
    return partition.path(location) if partition is not None else location
