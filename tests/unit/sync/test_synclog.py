"""The sync log's tables on a real SQLite file: created, extended, refused, batched, one try each."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.synclog import LogRow, RunKey, SyncLog, SyncLogError, compatible


def make_log(db: Path, key: RunKey | None = None, **kw: Any) -> SyncLog:
    return SyncLog(
        lambda: sqlite3.connect(db),
        dialect="sqlite",
        paramstyle="qmark",
        prefix=kw.pop("prefix", "ct"),
        key=key or RunKey("dag", "run1", "sync_members", -1, 1),
        sync_kind="members",
        program_host="api.example.com",
        **kw,
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


SUMMARY = {
    "counts": {"created": 3, "rejected": 1, "unchanged": 5},
    "rows_read": 9,
    "requests_sent": 4,
    "rate_limit": {"rate_limited": 2, "learned_requests_per_minute": 600.0},
    "rejects_path": "/tmp/r.jsonl",
}


def test_a_run_and_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sync_log = make_log(db, batch_size=2)
    sync_log.open()
    assert query(db, "SELECT status FROM ct_runs") == [("running",)]
    for n in range(3):
        sync_log.add(LogRow(n + 1, f"m{n}@x.com", "create", "created", 200))
    sync_log.add(LogRow(4, "bad", "create", "rejected", 400, "input_error", "row 4: email", "user_id"))
    sync_log.add(LogRow(5, "same@x.com", "update", "unchanged"))  # counted only
    # two full batches were written while the run went on, not one insert per row
    assert query(db, "SELECT COUNT(*) FROM ct_rows") == [(4,)]
    assert sync_log.finish(SUMMARY, status="ok") is None
    run = query(
        db, "SELECT status, rows_read, requests, rate_limited, learned_rate, created, rejected, unchanged, "
        "rejects_path, finished_at IS NOT NULL FROM ct_runs"
    )
    assert run == [("ok", 9, 4, 2, 600.0, 3, 1, 5, "/tmp/r.jsonl", 1)]
    rejected = "SELECT row_number, outcome, error_code, column_name FROM ct_rows WHERE outcome='rejected'"
    assert query(db, rejected) == [(4, "rejected", "input_error", "user_id")]


def test_log_unchanged_keeps_the_quiet_rows_too(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sync_log = make_log(db, log_unchanged=True)
    sync_log.open()
    sync_log.add(LogRow(1, "a@x.com", "update", "unchanged"))
    sync_log.finish(SUMMARY, status="ok")
    assert query(db, "SELECT outcome FROM ct_rows") == [("unchanged",)]


def test_retries_append_and_a_repeated_try_replaces_only_itself(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    for try_number in (1, 2):
        sync_log = make_log(db, RunKey("dag", "run1", "t", -1, try_number))
        sync_log.open()
        sync_log.add(LogRow(1, "a@x.com", "create", "failed", 503))
        sync_log.finish(SUMMARY, status="failed", error="boom")
    # the same try id again (e.g. `airflow tasks test`): its old rows go, the other try's stay
    again = make_log(db, RunKey("dag", "run1", "t", -1, 2))
    again.open()
    again.add(LogRow(1, "a@x.com", "create", "created", 200))
    again.finish(SUMMARY, status="ok")
    runs = query(db, "SELECT try_number, status FROM ct_runs ORDER BY try_number")
    assert runs == [(1, "failed"), (2, "ok")]
    assert query(db, "SELECT try_number, outcome FROM ct_rows ORDER BY try_number") == [
        (1, "failed"),
        (2, "created"),
    ]


def test_missing_columns_are_added_and_new_outcomes_get_a_column(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE ct_runs (dag_id TEXT, run_id TEXT, note TEXT)")
    sync_log = make_log(db)
    sync_log.open()
    sync_log.finish({**SUMMARY, "counts": {"entered": 2, "voided": 1}}, status="ok")
    assert query(db, "SELECT note, entered, voided FROM ct_runs") == [(None, 2, 1)]


def test_an_incompatible_column_is_refused_naming_table_and_column(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE ct_rows (row_number BLOB)")
    with pytest.raises(SyncLogError, match=r"ct_rows: column row_number is BLOB"):
        make_log(db).open()


def test_a_bad_prefix_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(SyncLogError, match="log_table_prefix"):
        make_log(tmp_path / "w.db", prefix="x; DROP TABLE users")


def test_secrets_are_redacted_and_a_failed_write_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sync_log = make_log(db, batch_size=1, redact=lambda t: t.replace("s3cret", "***"))
    sync_log.open()
    sync_log.add(LogRow(1, "a@x.com", "create", "failed", 401, None, "key s3cret refused"))
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE ct_rows")
    sync_log.add(LogRow(2, "b@x.com", "create", "failed", 503))
    problem = sync_log.finish(SUMMARY, status="ok")
    assert problem is not None and "ct_rows" in problem
    assert query(db, "SELECT error FROM ct_runs")[0][0].startswith("sync log table ct_rows")
    assert "s3cret" not in db.read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("kind", "declared", "ok"),
    [
        ("int", "bigint", True),
        ("int", "NUMERIC(12, 0)", True),
        ("int", "text", False),
        ("text", "character varying", True),
        ("text", "integer", False),
        ("timestamp", "timestamp without time zone", True),
        ("timestamp", "boolean", False),
        ("float", "double precision", True),
        ("key", "", True),
    ],
)
def test_compatible_types(kind: Any, declared: str, ok: bool) -> None:
    assert compatible(kind, declared) is ok
