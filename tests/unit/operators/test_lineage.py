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


def serialized(facet: Any) -> dict[str, Any]:
    """A facet or dataset as the OpenLineage client sends it (its own serializer, ``Serde``).

    The spec's JSON schemas ship in no installed package (openlineage-python carries generated classes
    that name their schema by URL, not the schema files), so the emitted JSON is checked field by field:
    the facet's ``_schemaURL`` names the spec facet, ``_producer`` is set, and the fields are there.
    """
    from openlineage.client.serde import Serde

    return json.loads(json.dumps(Serde.to_dict(facet)))


def assert_rows_read(dataset: Any, rows: int) -> None:
    data = serialized(dataset)
    facet = data["inputFacets"]["inputStatistics"]
    assert facet["rowCount"] == rows
    assert facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/")
    assert (
        "/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet"
        in facet["_schemaURL"]
    )
    assert facet["_producer"]
    assert {"namespace", "name", "facets", "inputFacets"} <= set(data)


def assert_sql_facet(lineage: Any, query: str) -> None:
    facet = serialized(lineage.job_facets["sql"])
    assert facet["query"] == query
    assert "/SQLJobFacet.json#/$defs/SQLJobFacet" in facet["_schemaURL"] and facet["_producer"]


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
    assert_rows_read(source, 4)  # every row the query gave, the refused one included
    assert_sql_facet(lineage, "SELECT user_id, first_name, last_name, postal_code FROM crm_members")
    program, rejected = lineage.outputs
    assert program.namespace == f"crowdtwist://{conn.base_url.split('://')[1]}"
    assert program.name == "members" and stats(program) == 3
    assert (rejected.namespace, rejected.name, stats(rejected)) == ("file", str(rejects), 1)


def test_a_join_names_every_table_and_claims_no_row_count_for_either(
    conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE people (email TEXT, first_name TEXT, last_name TEXT)")
        connection.execute("CREATE TABLE addresses (email TEXT, zip TEXT)")
        connection.executemany(
            "INSERT INTO people VALUES (?, ?, ?)", [(f"j{i}@example.com", "J", "N") for i in range(3)]
        )
        connection.executemany(
            "INSERT INTO addresses VALUES (?, ?)", [(f"j{i}@example.com", "02134") for i in range(3)]
        )
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_JOIN", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    sql = (
        "SELECT p.email AS user_id, p.first_name, p.last_name, a.zip AS postal_code "
        "FROM people p JOIN addresses a ON a.email = p.email"
    )
    op = CrowdTwistUserSyncOperator(
        task_id="lineage", crowdtwist_conn_id=CONN_ID, sql=sql, sql_conn_id="lineage_join"
    )
    assert op.execute({"ti": FakeTaskInstance()})["rows_read"] == 3
    lineage = op.get_openlineage_facets_on_complete(None)
    assert sorted(d.name for d in lineage.inputs) == ["addresses", "people"]
    # the 3 rows are the join's, not either table's: no count is claimed for one
    assert all("inputStatistics" not in serialized(d)["inputFacets"] for d in lineage.inputs)
    assert_sql_facet(lineage, sql)


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
    assert_rows_read(inp, 4)
    assert "sql" not in lineage.job_facets  # no query: no SQL job facet
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
