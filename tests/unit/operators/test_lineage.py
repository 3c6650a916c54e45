"""OpenLineage facets of both sync operators, with the openlineage provider installed (test group).

The operators run for real against the sandbox; then ``get_openlineage_facets_on_complete`` is called
as the openlineage provider's listener calls it. A last test runs a sync in a fresh interpreter where
the openlineage provider cannot be imported: the operators must not need it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage provider is in the test group")

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CONN_ID = "crowdtwist_lineage_test"
REPO = Path(__file__).resolve().parents[3]


class FakeTaskInstance:
    task_id = "lineage"
    dag_id = "lineage"
    run_id = "manual__1"
    try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": sandbox.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


def stats(dataset: Any) -> int:
    return dataset.outputFacets["outputStatistics"].rowCount


def test_member_sync_from_sql(conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE crm_members (user_id TEXT, first_name TEXT, last_name TEXT, postal_code TEXT)"
        )
        rows = [(f"l{i}@example.com", "L", "N", "02134") for i in range(3)] + [("broken", "B", "N", "02134")]
        connection.executemany("INSERT INTO crm_members VALUES (?, ?, ?, ?)", rows)
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    rejects = tmp_path / "rejects" / "members.jsonl"
    op = CrowdTwistUserSyncOperator(
        task_id="lineage",
        crowdtwist_conn_id=CONN_ID,
        sql="SELECT user_id, first_name, last_name, postal_code FROM crm_members",
        sql_conn_id="lineage_warehouse",
        rejects_path=str(rejects),
    )
    op.execute({"ti": FakeTaskInstance()})
    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    assert source.name == "crm_members" and source.namespace == f"sqlite://{db}"
    program, rejected = lineage.outputs
    assert program.namespace == f"crowdtwist://{conn.base_url.split('://')[1]}"
    assert program.name == "members" and stats(program) == 3
    assert (rejected.namespace, rejected.name, stats(rejected)) == ("file", str(rejects), 1)


def test_credit_sync_from_a_file(conn: Any, client_for: Any, tmp_path: Path) -> None:
    client_for(conn).create_user(
        {"first_name": "A", "last_name": "B", "email_address": "c@example.com", "postal_code": "02134"}
    )
    source = tmp_path / "events.csv"
    pd.DataFrame([{"email": "c@example.com", "event_id": f"e{i}"} for i in range(4)]).to_csv(
        source, index=False
    )
    op = CrowdTwistActivityCreditOperator(
        task_id="lineage",
        crowdtwist_conn_id=CONN_ID,
        source_path=str(source),
        id_column="email",
        activity_id="purchase",
        dedupe_key_column="event_id",
        ledger_path=str(tmp_path / "ledger.sqlite"),
    )
    op.execute({"ti": FakeTaskInstance()})
    lineage = op.get_openlineage_facets_on_complete(None)
    (inp,) = lineage.inputs
    assert (inp.namespace, inp.name) == ("file", str(source))
    (program,) = lineage.outputs  # nothing rejected: no rejects dataset
    assert program.name == "activities/purchase" and stats(program) == 4


BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = (
        "airflow.providers.openlineage.extractors",
        "airflow.providers.openlineage.sqlparser",
        "airflow.providers.common.compat.openlineage",
        "openlineage.client",
    )

    class NoOpenLineage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            # what a lineage implementation imports; Airflow's own provider discovery may still
            # read the provider's metadata module
            if name.startswith(BLOCKED):
                raise ImportError("openlineage is not installed here")
            return None

    sys.meta_path.insert(0, NoOpenLineage())
    from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

    class TI:
        task_id = "no_ol"
        def xcom_push(self, key, value):
            pass

    op = CrowdTwistUserSyncOperator(task_id="no_ol", crowdtwist_conn_id="ct", rows=[
        {"user_id": "nol@example.com", "first_name": "N", "last_name": "O", "postal_code": "02134"}])
    print("RESULT=" + json.dumps(op.execute({"ti": TI()})["counts"]))
    """
)


def test_operators_work_without_the_openlineage_provider(conn: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["AIRFLOW_CONN_CT"] = json.dumps(
        {
            "conn_type": "crowdtwist",
            "host": conn.base_url,
            "password": conn.api_key,
            "extra": {"requests_per_minute": 0},
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
    assert json.loads(line.removeprefix("RESULT="))["created"] == 1
