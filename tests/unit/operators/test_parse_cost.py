"""Parsing a DAG that uses the operators must not import pandas or numpy.

Airflow re-imports every DAG file many times a day; pandas and numpy cost ~0.3 s per fresh import.
Checked in a fresh interpreter (this test process has pandas loaded already), with the operators
constructed as in a DAG file, since their argument checks run at parse time too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_crowdtwist.sync.lazy import LazyModule

REPO = Path(__file__).resolve().parents[3]

PARSE = textwrap.dedent(
    """
    import json, sys
    from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
    from airflow_provider_crowdtwist.operators.audience import CrowdTwistAudienceSyncOperator
    from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
    from airflow_provider_crowdtwist.sensors.crowdtwist import CrowdTwistApiSensor

    CrowdTwistUserSyncOperator(
        task_id="members", sql="SELECT 1", sql_conn_id="warehouse",
        field_mapping={"store": "custom_data.store"}, max_failed_ratio=0.1,
    )
    CrowdTwistActivityCreditOperator(
        task_id="credits", sql="SELECT 1", sql_conn_id="warehouse", activity_id="purchase",
        points_column="points", dedupe_key_column="event_id", ledger_path="/tmp/ledger.sqlite",
    )
    CrowdTwistApiSensor(task_id="wait")
    CrowdTwistAudienceSyncOperator(
        task_id="audience", sql="SELECT 1", sql_conn_id="warehouse", attribute="vip",
        state_path="/tmp/audience.sqlite", mode="both", segment_name="vip", sftp_conn_id="sftp",
    )
    heavy = ("pandas", "numpy", "pyarrow", "paramiko")
    print("LOADED=" + json.dumps(sorted(m for m in heavy if m in sys.modules)))
    """
)


def test_importing_and_building_the_operators_does_not_import_pandas(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(
        [sys.executable, "-c", PARSE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED="))
    assert json.loads(line.removeprefix("LOADED=")) == []


def test_lazy_module_imports_on_first_use_and_replaces_itself() -> None:
    namespace: dict = {}
    namespace["js"] = LazyModule("json", namespace, "js")
    assert repr(namespace["js"]) == "<lazy module 'json'>"
    assert namespace["js"].dumps([1]) == "[1]"
    assert namespace["js"] is json
    with pytest.raises(AttributeError):
        LazyModule("json", {}, "x").__wrapped__  # noqa: B018
