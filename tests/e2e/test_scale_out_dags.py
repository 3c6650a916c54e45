"""The scale-out example DAGs run to success in a real Airflow: mapped partitions, several programs.

Each run is ``airflow dags test`` in a child process (see conftest.py). Asserted: the end state in the
sandbox equals the source (every clean member once, every credit of the interval once), the mapped task
instances each handled their own partition with their own files, the combined summaries add up, and a
rerun of the partitioned DAG sends no credit twice. Speed is not asserted (benchmarks/partitions.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    AirflowEnv,
    WarehouseRows,
    api_key_conn,
    assert_no_secrets,
    e2e_sandbox_running,
    explain,
    files_under,
)
from tests.e2e.test_example_dags import (
    DEFAULT_POINTS,
    INTERVAL_END,
    INTERVAL_START,
    assert_consistent,
    assert_members_in_sandbox,
    expected_members,
)

pytestmark = pytest.mark.e2e

PARTITIONS = 4


def mapped_summaries(airflow_env: AirflowEnv, dag_id: str, task_id: str) -> dict[int, dict[str, Any]]:
    """``{map_index: summary}`` of a mapped task in the DAG's latest run (read from the metadata DB)."""
    db = airflow_env.home / "airflow.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (run_id,) = con.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = con.execute(
            "SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND key = 'return_value'",
            (dag_id, run_id, task_id),
        ).fetchall()
    finally:
        con.close()
    out = {}
    for index, raw in rows:
        out[int(index)] = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    return out


def test_partitioned_sync_end_state_equals_source_and_rerun_credits_nothing(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    env = {
        **sqlite_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_PARTITIONS": str(PARTITIONS),
    }
    dag_id = "crowdtwist_partitioned_sync"
    proc = airflow_env.dags_test(dag_id, extra_env=env)
    assert proc.returncode == 0, explain(proc)

    # --- every partition ran, on its own rows and its own files
    parts = mapped_summaries(airflow_env, dag_id, "sync_members")
    assert sorted(parts) == list(range(PARTITIONS))
    assert [parts[i]["partition"] for i in range(PARTITIONS)] == [[i, PARTITIONS] for i in range(PARTITIONS)]
    assert all(p["rows_read"] > 0 for p in parts.values())  # 300 members: none is empty
    for i in range(PARTITIONS):
        assert (work / "state" / f"partitioned-member-state.part-{i}-of-{PARTITIONS}.sqlite").is_file()
        assert (work / "state" / f"partitioned-credit-ledger.part-{i}-of-{PARTITIONS}.sqlite").is_file()
    assert not (work / "state" / "partitioned-member-state.sqlite").exists()

    # --- the combined summaries equal what one unpartitioned sync would report
    clean, rejected, superseded = expected_members(warehouse_rows.members)
    summaries = airflow_env.summaries(dag_id)
    members = summaries["members_total"]
    assert members["partitions"] == PARTITIONS
    assert_consistent(members)
    assert members["rows_read"] == len(warehouse_rows.members) == sum(p["rows_read"] for p in parts.values())
    assert members["counts"]["created"] == len(clean)
    assert members["counts"]["rejected"] == rejected
    assert members["counts"]["skipped"] == superseded  # duplicates met in one partition: hashed alike
    assert members["counts"]["failed"] == 0
    assert_members_in_sandbox(e2e_sandbox, clean)

    day = warehouse_rows.events_between(INTERVAL_START, INTERVAL_END)
    good = [e for e in day if e["activity_id"] in DEFAULT_POINTS]
    credits = summaries["credits_total"]
    assert_consistent(credits)
    assert credits["rows_read"] == len(day)
    assert credits["counts"]["credited"] == len(good)
    awarded = e2e_sandbox.admin.credits()
    assert sorted(c["extra_data"]["order_id"] for c in awarded) == sorted(e["event_id"] for e in good)
    assert_no_secrets(
        proc.stdout, proc.stderr, json.dumps(summaries), paths=files_under(work, airflow_env.home / "logs")
    )

    # --- the same day again: each partition's ledger and state hold, nothing is sent twice
    proc = airflow_env.dags_test(dag_id, extra_env=env)
    assert proc.returncode == 0, explain(proc)
    again = airflow_env.summaries(dag_id)
    assert again["credits_total"]["counts"]["credited"] == 0
    assert again["credits_total"]["counts"]["skipped"] == len(good)
    assert again["members_total"]["counts"]["unchanged"] == len(clean)
    assert len(e2e_sandbox.admin.credits()) == len(good)


@pytest.fixture
def second_program() -> Iterator[Any]:
    """Another CrowdTwist program: its own sandbox, its own members."""
    with e2e_sandbox_running() as server:
        yield server


def test_multi_program_sync_sends_each_program_its_members(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    second_program: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    env = {
        **sqlite_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_US": api_key_conn(e2e_sandbox),
        "AIRFLOW_CONN_CROWDTWIST_EU": api_key_conn(second_program),
        "CROWDTWIST_PROGRAM_CONN_IDS": "crowdtwist_us,crowdtwist_eu",
        "CROWDTWIST_PARTITIONS": "2",
        "CROWDTWIST_DEMO_DIR": str(work),
    }
    dag_id = "crowdtwist_multi_program_sync"
    proc = airflow_env.dags_test(dag_id, extra_env=env)
    assert proc.returncode == 0, explain(proc)

    clean, rejected, _ = expected_members(warehouse_rows.members)
    for program in (e2e_sandbox, second_program):
        stored = {m["email_address"].lower(): m for m in program.admin.members()}
        assert set(stored) == {e.lower() for e in clean}
        for email, row in clean.items():
            assert stored[email.lower()]["last_name"] == row["last_name"], email
    parts = mapped_summaries(airflow_env, dag_id, "sync_members")
    assert sorted(parts) == [0, 1, 2, 3]  # 2 programs x 2 partitions
    total = airflow_env.summaries(dag_id)["members_total"]
    assert_consistent(total)
    assert total["partitions"] == 4
    assert total["rows_read"] == 2 * len(warehouse_rows.members)
    assert total["counts"]["created"] == 2 * len(clean)
    assert total["counts"]["rejected"] == 2 * rejected
    for program in ("crowdtwist_us", "crowdtwist_eu"):  # each program its own state files
        for i in range(2):
            assert (work / "state" / f"{program}-member-state.part-{i}-of-2.sqlite").is_file()
    assert_no_secrets(proc.stdout, proc.stderr, paths=files_under(work, airflow_env.home / "logs"))
