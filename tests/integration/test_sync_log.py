"""The sync log and the calls sample through the real operators, against the sandbox over HTTP.

Faults (503s, a rate limit that answers 429) and bad rows; the log on SQLite and on a real
PostgreSQL. Checked: the runs table's counts equal the summary XCom, every rejected or failed row is
in the rows table with CrowdTwist's message, two runs append, a retried try adds its own rows and
never duplicates another's, no secret anywhere (tables and calls file searched), the calls sample
holds at most ``calls_per_class`` per class plus the first 429 and the first 5xx, and with
``calls_pii=False`` no e-mail address or name from the source.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
from tests.e2e.conftest import PostgresServer, postgres_server  # noqa: F401  (the session fixture)

CONN_ID = "crowdtwist_sync_log_test"
LOG_CONN_ID = "sync_log_db"
PASSWORD = "Pa55-w0rd-never-logged"


class FakeTaskInstance:
    def __init__(self, try_number: int = 1, run_id: str = "scheduled__2026-12-01") -> None:
        self.xcom: dict[str, Any] = {}
        self.dag_id, self.task_id, self.run_id = "log_dag", "sync", run_id
        self.map_index, self.try_number = -1, try_number

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcom[key] = value


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": {"id_type": "email", "requests_per_minute": 0},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


def members(n: int) -> list[dict[str, Any]]:
    rows = [
        {
            "user_id": f"logged{i}@example.com",
            "first_name": f"Loggedname{i}",
            "last_name": "Surnamezz",
            "postal_code": "02134",
            "password": PASSWORD,
            "tier": None,
        }
        for i in range(n)
    ]
    rows[3]["user_id"] = "not-an-email"  # rejected before sending, column user_id
    rows[5]["tier"] = "gold"  # refused by CrowdTwist: the program has no custom attribute "tier"
    return rows


def run_members(tmp_path: Path, ti: FakeTaskInstance, **kw: Any) -> dict[str, Any]:
    op = CrowdTwistUserSyncOperator(
        task_id="sync",
        crowdtwist_conn_id=CONN_ID,
        rows=members(40),
        unmapped_columns="ignore",
        field_mapping={"tier": "custom_data.tier"},
        max_failed_ratio=1.0,
        max_workers=4,
        log_conn_id=LOG_CONN_ID,
        calls_path=str(tmp_path / f"calls-{ti.try_number}.jsonl"),
        calls_per_class=2,
        **kw,
    )
    with contextlib.suppress(Exception):  # a failed run still logs; the summary went to XCom
        op.execute({"ti": ti})
    return ti.xcom["summary"]


def order(table: str) -> str:
    return "try_number, row_number" if table.endswith("_rows") else "try_number"


def sqlite_conn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "log.db"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{LOG_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db)})
    )
    return db


def check_log(rows_of: Any, runs_of: Any, summaries: list[dict[str, Any]], sandbox: Any) -> None:
    runs = runs_of()
    assert len(runs) == len(summaries)
    for run, summary in zip(runs, summaries, strict=True):
        counts = {k: v for k, v in summary["counts"].items() if v}
        assert {k: run[k] for k in counts} == counts
        assert run["rows_read"] == summary["rows_read"] and run["requests"] == summary["requests_sent"]
        assert run["status"] in ("ok", "failed") and run["finished_at"] is not None
    logged = rows_of()
    for summary, try_number in zip(summaries, (r["try_number"] for r in runs), strict=True):
        mine = [r for r in logged if r["try_number"] == try_number]
        bad = summary["counts"].get("rejected", 0) + summary["counts"].get("failed", 0)
        assert len([r for r in mine if r["outcome"] in ("rejected", "failed")]) == bad
        assert len({r["row_number"] for r in mine}) == len(mine)  # never a row twice within a try
        refused = [r for r in mine if r["row_number"] == 6]
        assert refused and "Unrecognized attribute" in refused[0]["message"]
        assert refused[0]["http_status"] == 400 and refused[0]["column_name"] == "'tier'"
        early = [r for r in mine if r["row_number"] == 4]
        assert early and early[0]["column_name"] == "'user_id'" and early[0]["outcome"] == "rejected"
    dump = json.dumps([runs, logged], default=str)
    for secret in (sandbox.api_key, PASSWORD):
        assert secret not in dump


def check_calls(path: Path, sandbox: Any) -> None:
    text = path.read_text(encoding="utf-8")
    calls = [json.loads(line) for line in text.splitlines()]
    per_class = Counter((c["class"], c["status"], c["error_code"]) for c in calls if "first" not in c)
    assert per_class and max(per_class.values()) <= 2
    firsts = {c["first"] for c in calls if "first" in c}
    assert {"first_429", "first_5xx"} <= firsts
    for secret in (sandbox.api_key, PASSWORD, "logged1@example.com", "Loggedname1", "Surnamezz"):
        assert secret not in text


def test_member_sync_log_on_sqlite(conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = sqlite_conn(tmp_path, monkeypatch)
    conn.configure(error_rate=0.1, error_status=503, rate_limit_per_minute=6000, rate_limit_burst=5, seed=7)
    summaries = []
    for try_number in (1, 2):  # a retry of the task: its own try, appended
        ti = FakeTaskInstance(try_number)
        summaries.append(run_members(tmp_path, ti))
        check_calls(tmp_path / f"calls-{try_number}.jsonl", conn)
        assert ti.xcom["summary"]["calls_path"].endswith(f"calls-{try_number}.jsonl")
    # the very same try again (a task re-run by hand): it replaces its own rows, never another's
    summaries[1] = run_members(tmp_path, FakeTaskInstance(2))

    def fetch(table: str) -> list[dict[str, Any]]:
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY {order(table)}")]
        finally:
            con.close()

    check_log(lambda: fetch("crowdtwist_sync_rows"), lambda: fetch("crowdtwist_sync_runs"), summaries, conn)
    assert summaries[0]["log_table"] == "crowdtwist_sync_runs" and not summaries[0]["log_missing"]
    assert PASSWORD.encode() not in db.read_bytes() and conn.api_key.encode() not in db.read_bytes()


def test_calls_pii_keeps_members(conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_conn(tmp_path, monkeypatch)
    run_members(tmp_path, FakeTaskInstance(), calls_pii=True)
    text = (tmp_path / "calls-1.jsonl").read_text(encoding="utf-8")
    assert "@example.com" in text and PASSWORD not in text and conn.api_key not in text


def test_credit_sync_logs_its_rows(conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = sqlite_conn(tmp_path, monkeypatch)
    ti = FakeTaskInstance()
    op = CrowdTwistActivityCreditOperator(
        task_id="credit",
        crowdtwist_conn_id=CONN_ID,
        rows=[{"user_id": f"nobody{i}@example.com", "event_id": f"e{i}"} for i in range(3)],
        activity_id="purchase",
        dedupe_key_column="event_id",
        ledger_path=str(tmp_path / "ledger.db"),
        log_conn_id=LOG_CONN_ID,
        log_table_prefix="credits_log",
        max_failed_ratio=1.0,
    )
    with contextlib.suppress(Exception):
        op.execute({"ti": ti})
    with sqlite3.connect(db) as con:
        run = con.execute("SELECT sync_kind, rows_read, status FROM credits_log_runs").fetchall()
        outcomes = con.execute("SELECT operation, outcome FROM credits_log_rows").fetchall()
    assert run == [("credits", 3, run[0][2])]
    summary = ti.xcom["summary"]
    assert len(outcomes) == sum(v for k, v in summary["counts"].items() if k not in ("unchanged", "skipped"))


def test_an_incompatible_log_table_stops_before_the_first_request(
    conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_conn(tmp_path, monkeypatch)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE crowdtwist_sync_rows (row_number BLOB)")
    before = conn.admin.stats()
    op = CrowdTwistUserSyncOperator(
        task_id="sync",
        crowdtwist_conn_id=CONN_ID,
        rows=members(8),
        unmapped_columns="ignore",
        log_conn_id=LOG_CONN_ID,
    )
    with pytest.raises(Exception, match="crowdtwist_sync_rows: column row_number"):
        op.execute({"ti": FakeTaskInstance()})
    assert conn.admin.members() == []
    assert conn.admin.stats() == before  # not one request


@pytest.mark.postgres
def test_member_sync_log_on_postgres(
    conn: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    admin = postgres_server.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS crowdtwist_sync_runs, crowdtwist_sync_rows")
    admin.close()
    pg = {
        "conn_type": "postgres",
        "host": postgres_server.host,
        "port": postgres_server.port,
        "login": postgres_server.user,
        "schema": "postgres",
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{LOG_CONN_ID.upper()}", json.dumps(pg))
    conn.configure(error_rate=0.1, error_status=503, rate_limit_per_minute=6000, rate_limit_burst=5, seed=11)
    summaries = [run_members(tmp_path, FakeTaskInstance(t)) for t in (1, 2)]

    def fetch(table: str) -> list[dict[str, Any]]:
        con = postgres_server.connect()
        try:
            with con.cursor() as cur:
                cur.execute(f"SELECT * FROM {table} ORDER BY {order(table)}")
                names = [d[0] for d in cur.description]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()

    check_log(lambda: fetch("crowdtwist_sync_rows"), lambda: fetch("crowdtwist_sync_runs"), summaries, conn)
