"""The sync log's tables on a real PostgreSQL server (started by the test setup): the same behaviour
as on SQLite, with PostgreSQL's own types, its ``information_schema`` and psycopg2's ``pyformat``."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.synclog import LogRow, RunKey, SyncLog, SyncLogError
from tests.e2e.conftest import PostgresServer, postgres_server  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:  # noqa: F811
    con = postgres_server.connect()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pg_log_runs, pg_log_rows")
    con.close()
    return postgres_server


def make_log(server: PostgresServer, try_number: int) -> SyncLog:
    return SyncLog(
        server.connect,
        dialect="postgresql",
        paramstyle="pyformat",
        prefix="pg_log",
        key=RunKey("dag", "scheduled__2026-12-01", "sync_credits", 3, try_number),
        sync_kind="credits",
        program_host="api.example.com",
        partition="3/4",
        batch_size=2,
    )


def fetch(server: PostgresServer, sql: str) -> list[tuple[Any, ...]]:
    con = server.connect()
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


def test_runs_and_rows_on_postgres(pg: PostgresServer) -> None:
    for try_number in (1, 2):
        sync_log = make_log(pg, try_number)
        sync_log.open()
        for n in range(3):
            sync_log.add(LogRow(n + 1, f"m{n}@x.com", "credit", "credited", 200))
        sync_log.add(LogRow(9, "m9@x.com", "credit", "rejected", 400, "input_error", "no such activity", "a"))
        summary = {"counts": {"credited": 3, "rejected": 1}, "rows_read": 4, "requests_sent": 4}
        assert sync_log.finish(summary, status="degraded") is None
    runs = fetch(
        pg, "SELECT try_number, map_index, partition_name, status, credited, rejected FROM pg_log_runs"
    )
    assert sorted(runs) == [(1, 3, "3/4", "degraded", 3, 1), (2, 3, "3/4", "degraded", 3, 1)]
    assert fetch(pg, "SELECT COUNT(*) FROM pg_log_rows") == [(8,)]
    columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name='pg_log_runs'"
    types = dict(fetch(pg, columns))
    assert types["started_at"] == "timestamp without time zone"
    assert types["learned_rate"] == "double precision"


def test_an_incompatible_column_on_postgres(pg: PostgresServer) -> None:
    con = pg.connect()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("CREATE TABLE pg_log_rows (http_status BOOLEAN)")
    con.close()
    with pytest.raises(SyncLogError, match="pg_log_rows: column http_status is boolean"):
        make_log(pg, 1).open()
