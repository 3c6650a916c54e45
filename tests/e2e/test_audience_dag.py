"""crowdtwist_audience_sync, run in a real Airflow against the sandbox and a real SFTP server.

Two audiences from the sample warehouse (SQLite): ``recent_buyer`` (members with a purchase) as a
trait, and ``churn_risk`` (members without an event) as a trait and a Client Defined Segment file.
The expectations are computed from the warehouse rows, independently of the provider's code; a second
run of the same day changes nothing and sends nothing, and uploads the next version of the file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import client_for
from tests.e2e.conftest import (
    AirflowEnv,
    WarehouseRows,
    api_key_conn,
    assert_no_secrets,
    explain,
    files_under,
    make_warehouse,
)
from tests.sftp_server import SftpServer, sftp_server

pytestmark = pytest.mark.e2e

DAG_ID = "crowdtwist_audience_sync"


@pytest.fixture(scope="module")
def sftp() -> Iterator[SftpServer]:
    with sftp_server() as server:
        yield server


def first_of_each(identifiers: list[str]) -> list[str]:
    """Each member once, first row first; emails compare without case (as CrowdTwist's id_type=email)."""
    seen: set[str] = set()
    out: list[str] = []
    for identifier in identifiers:
        if identifier.lower() not in seen:
            seen.add(identifier.lower())
            out.append(identifier)
    return out


def test_audience_dag_sets_traits_and_uploads_the_segment_file(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
    sftp: SftpServer,
) -> None:
    clean = first_of_each([m["user_id"] for m in warehouse_rows.members if make_warehouse._is_clean(m)])
    with client_for(e2e_sandbox) as client:  # the member sync's job, done here directly
        for user in clean:
            client.create_user(
                {"email_address": user, "first_name": "A", "last_name": "B", "postal_code": "10001"}
            )
    segment_dir = sftp.root / "e2e"
    segment_dir.mkdir()
    work = tmp_path / "work"
    env = {
        **sqlite_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "AIRFLOW_CONN_CROWDTWIST_SFTP": sftp.connection_json(),
        "CROWDTWIST_SEGMENT_DIR": str(segment_dir),
        "CROWDTWIST_DEMO_DIR": str(work),
    }
    proc = airflow_env.dags_test(DAG_ID, extra_env=env)
    assert proc.returncode == 0, explain(proc)

    # every event of the sample warehouse lies in the last 3 days: in both windows
    purchases = sorted({e["user_email"] for e in warehouse_rows.events if e["activity_id"] == "purchase"})
    buyers = first_of_each(purchases)
    active = {e["user_email"].lower() for e in warehouse_rows.events}
    churn_rows = sorted(m["user_id"] for m in warehouse_rows.members if m["user_id"].lower() not in active)
    summaries = airflow_env.summaries(DAG_ID)
    recent = summaries["recent_buyers"]
    assert recent["counts"]["entered"] == len(buyers) and recent["rows_read"] == len(purchases)
    held = {m["email_address"]: m.get("custom_data", {}) for m in e2e_sandbox.admin.members()}
    assert sorted(u for u, data in held.items() if data.get("recent_buyer") is True) == sorted(buyers)

    churn = summaries["churn_risk"]
    writable = [u.strip() for u in churn_rows if u.strip() and not any(c in u for c in ',"\r\n')]
    expected_file = first_of_each(writable)
    known = {u.lower() for u in clean}
    assert churn["rows_read"] == len(churn_rows)
    assert churn["counts"]["entered"] == len([u for u in expected_file if u.lower() in known])
    assert churn["counts"]["skipped"] == len(writable) - len(expected_file)  # listed twice
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    first_file = segment_dir / f"churn_risk_{day}_0001.csv"
    assert churn["segment_file"] == str(first_file)
    body = "email_address\n" + "".join(f"{u}\n" for u in expected_file)
    assert first_file.read_bytes() == body.encode()
    assert sorted(u for u, data in held.items() if data.get("churn_risk") is True) == sorted(
        u for u in clean if u in expected_file
    )

    # the same day again: members in the audience cost nothing; only those CrowdTwist did not know
    # (rejected "member not found", so never stored) are tried again; the next version of the file
    unknown = [u for u in expected_file if u.lower() not in known]
    before = e2e_sandbox.admin.stats()["total"]
    proc = airflow_env.dags_test(DAG_ID, extra_env=env)
    assert proc.returncode == 0, explain(proc)
    assert e2e_sandbox.admin.stats()["total"] - before == len(unknown)
    again = airflow_env.summaries(DAG_ID)
    assert again["recent_buyers"]["counts"]["unchanged"] == len(buyers)
    assert again["recent_buyers"]["requests_sent"] == 0
    assert again["churn_risk"]["counts"]["unchanged"] == len(expected_file) - len(unknown)
    assert (segment_dir / f"churn_risk_{day}_0002.csv").read_bytes() == body.encode()
    assert_no_secrets(
        proc.stdout, proc.stderr, json.dumps(summaries), paths=files_under(work, airflow_env.home / "logs")
    )
