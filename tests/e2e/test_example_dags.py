"""Every example DAG loads, and runs to success in a real Airflow against the sandbox.

Each run is ``airflow dags test`` in a child process (see conftest.py for why). What is asserted is
the end state a user cares about: which members CrowdTwist holds and with what attributes, which
credits it awarded and how many points, the summaries in XCom adding up to the rows read, the rejects
files naming the bad rows -- and that no secret appears in any of it. The expectations are computed
from the sample warehouse's rows, independently of the provider's code.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    DAGS_DIR,
    AirflowEnv,
    WarehouseRows,
    api_key_conn,
    assert_no_secrets,
    e2e_sandbox_running,
    explain,
    files_under,
    hmac_conn,
    make_warehouse,
)

pytestmark = pytest.mark.e2e

EXAMPLE_DAG_IDS = {
    "crowdtwist_loyalty_sync",
    "crowdtwist_member_file_sync",
    "crowdtwist_hmac_review_rewards",
    "crowdtwist_live_push_load",
    "crowdtwist_partitioned_sync",
    "crowdtwist_multi_program_sync",
    "crowdtwist_after_member_sync",  # run by tests/e2e/test_assets_and_alerts.py
    "crowdtwist_member_sync_alerts",  # run by tests/e2e/test_assets_and_alerts.py
    "crowdtwist_purchases_sync",
    "crowdtwist_audience_sync",  # run by tests/e2e/test_audience_dag.py
    "crowdtwist_member_sync_slack_alerts",  # run by tests/e2e/test_assets_and_alerts.py
}
# The live push load runs hourly (pushes arrive all day); the syncs run daily.
HOURLY_DAG_IDS = {"crowdtwist_live_push_load"}
ASSET_SCHEDULED = {"crowdtwist_after_member_sync"}
# The sandbox program's default points per activity (sandbox/settings.py DEFAULT_ACTIVITIES).
DEFAULT_POINTS = {"purchase": 10, "signup": 50, "review": 5, "birthday": 100}
# RUN_DATE's data interval (daily, UTC): the day before.
INTERVAL_START = "2026-11-21 00:00:00"
INTERVAL_END = "2026-11-22 00:00:00"


# ------------------------------------------------------------------------------------------------
# expectations, computed from the warehouse rows


def expected_members(members: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], int, int]:
    """(clean members by email, last row wins; rejected row count; duplicate rows superseded)."""
    clean: dict[str, dict[str, Any]] = {}
    clean_rows = 0
    rejected = 0
    for row in members:
        if make_warehouse._is_clean(row):
            clean_rows += 1
            clean[row["user_id"]] = row
        else:
            rejected += 1
    return clean, rejected, clean_rows - len(clean)


def epoch_of(date_text: str) -> int:
    """Midnight UTC of an ISO date, as epoch seconds (how CrowdTwist stores a date of birth)."""
    return calendar.timegm(dt.date.fromisoformat(date_text).timetuple())


def assert_members_in_sandbox(sandbox: Any, expected: dict[str, dict[str, Any]]) -> None:
    """CrowdTwist holds exactly the clean members, with their attributes as in the warehouse."""
    stored = {m["email_address"].lower(): m for m in sandbox.admin.members()}
    assert set(stored) == {e.lower() for e in expected}
    for email, row in expected.items():
        member = stored[email.lower()]
        where = f"member {email}"
        assert member["first_name"] == row["first_name"], where
        assert member["last_name"] == row["last_name"], where
        if row["postal_code"]:
            assert member.get("postal_code") == row["postal_code"], where
        if row["date_of_birth"]:
            assert int(member["date_of_birth"]) == epoch_of(row["date_of_birth"]), where
        custom = member.get("custom_data") or {}
        assert custom.get("favorite_store") == row["favorite_store"], where
        assert custom.get("loyalty_segment") == row["loyalty_segment"], where
        assert float(custom.get("lifetime_value")) == pytest.approx(row["lifetime_value"]), where


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_consistent(summary: dict[str, Any]) -> None:
    """Every row read ended in exactly one outcome."""
    assert sum(summary["counts"].values()) == summary["rows_read"], summary


# ------------------------------------------------------------------------------------------------
# DagBag


def test_example_dags_load_without_import_errors(airflow_env: AirflowEnv) -> None:
    code = textwrap.dedent(
        f"""
        import json
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:
            from airflow.models.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS_DIR)!r})  # no examples: AIRFLOW__CORE__LOAD_EXAMPLES=False
        out = {{
            "errors": {{str(k): str(v) for k, v in bag.import_errors.items()}},
            "dags": {{
                dag_id: {{
                    "tasks": sorted(t.task_id for t in dag.tasks),
                    "catchup": dag.catchup,
                    "schedule": str(
                        getattr(dag.timetable, "summary", None)
                        or getattr(dag.timetable, "_expression", None)
                        or getattr(dag, "schedule", None)
                    ),
                    "edges": sorted(
                        [t.task_id, d] for t in dag.tasks for d in sorted(t.downstream_task_ids)
                    ),
                }}
                for dag_id, dag in bag.dags.items()
            }},
        }}
        print("DAGBAG=" + json.dumps(out))
        """
    )
    proc = airflow_env.python(code)
    assert proc.returncode == 0, explain(proc)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DAGBAG="))
    bag = json.loads(line[len("DAGBAG=") :])
    assert bag["errors"] == {}
    assert set(bag["dags"]) == EXAMPLE_DAG_IDS
    for dag_id, info in bag["dags"].items():
        assert info["catchup"] is False, dag_id
        if dag_id in ASSET_SCHEDULED:  # "Asset" on Airflow 3, "Dataset" on Airflow 2
            assert "sset" in info["schedule"] or "ataset" in info["schedule"], (dag_id, info["schedule"])
        elif dag_id in HOURLY_DAG_IDS:
            assert "hourly" in info["schedule"] or "0 * * * *" in info["schedule"], (dag_id, info["schedule"])
        else:
            assert "daily" in info["schedule"] or "0 0 * * *" in info["schedule"], (dag_id, info["schedule"])
    loyalty = bag["dags"]["crowdtwist_loyalty_sync"]
    # The credits run only after the members exist, and only once CrowdTwist answers.
    assert ["wait_for_crowdtwist", "sync_members"] in loyalty["edges"]
    assert ["sync_members", "credit_events"] in loyalty["edges"]
    shop = bag["dags"]["crowdtwist_purchases_sync"]
    # Orders after the members exist, refunds after the orders they return.
    assert shop["edges"] == [["send_orders", "send_refunds"], ["sync_members", "send_orders"]]


# ------------------------------------------------------------------------------------------------
# crowdtwist_loyalty_sync, from SQLite and from PostgreSQL


def run_loyalty_sync(
    airflow_env: AirflowEnv,
    sandbox: Any,
    warehouse_env: dict[str, str],
    rows: WarehouseRows,
    work_dir: Path,
    *,
    rerun: bool,
) -> None:
    """Run the loyalty DAG for RUN_DATE and check everything it promises; optionally run it again."""
    env = {
        **warehouse_env,
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(sandbox),
        "CROWDTWIST_DEMO_DIR": str(work_dir),
    }
    proc = airflow_env.dags_test("crowdtwist_loyalty_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)

    # --- members
    clean, rejected, superseded = expected_members(rows.members)
    summaries = airflow_env.summaries("crowdtwist_loyalty_sync")
    assert set(summaries) >= {"sync_members", "credit_events"}, summaries
    members = summaries["sync_members"]
    assert_consistent(members)
    assert members["rows_read"] == len(rows.members)
    assert members["counts"]["created"] == len(clean)
    assert members["counts"]["rejected"] == rejected
    assert members["counts"]["skipped"] == superseded
    assert members["counts"]["failed"] == 0
    # the status: ok up to 10 % rejected (the demo: 54 of 2001), degraded above (degraded_rejected_ratio)
    assert members["status"] == ("degraded" if rejected / len(rows.members) > 0.1 else "ok"), members
    assert_members_in_sandbox(sandbox, clean)

    rejects = Path(members["rejects_path"])
    assert rejects.is_file(), members
    bad = read_jsonl(rejects)
    assert len(bad) == rejected
    assert {b["identifier"] for b in bad if b["identifier"]} <= {
        m["user_id"] for m in rows.members if not make_warehouse._is_clean(m)
    }
    assert all(b["row_number"] >= 1 and b["message"] for b in bad)

    # --- credits: the data interval's events only
    day = rows.events_between(INTERVAL_START, INTERVAL_END)
    assert day, "the sample warehouse has no events in the interval"
    good = [e for e in day if e["activity_id"] in DEFAULT_POINTS]
    unknown = [e for e in day if e["activity_id"] not in DEFAULT_POINTS]
    credits = summaries["credit_events"]
    assert_consistent(credits)
    assert credits["rows_read"] == len(day)
    assert credits["counts"]["credited"] == len(good)
    assert credits["counts"]["rejected"] + credits["counts"]["failed"] == len(unknown)
    awarded = sandbox.admin.credits()
    assert sorted(c["extra_data"]["order_id"] for c in awarded) == sorted(e["event_id"] for e in good)
    expected_points = sum(
        e["points"] if e["points"] is not None else DEFAULT_POINTS[e["activity_id"]] for e in good
    )
    assert sum(int(c["points"]) for c in awarded) == expected_points
    if unknown:
        credit_rejects = read_jsonl(Path(credits["rejects_path"]))
        assert len(credit_rejects) == len(unknown)
        assert all(make_warehouse.UNKNOWN_ACTIVITY in json.dumps(r) for r in credit_rejects)

    assert_no_secrets(
        proc.stdout,
        proc.stderr,
        json.dumps(summaries),
        paths=files_under(work_dir, airflow_env.home / "logs"),
    )

    if not rerun:
        return

    # --- the same day again: nothing awarded twice (the ledger), members already there.
    def credit_requests() -> int:
        by_route = sandbox.admin.stats()["by_route"]
        return sum(n for route, n in by_route.items() if route.startswith("POST") and "activities" in route)

    credit_requests_before = credit_requests()
    assert credit_requests_before >= len(good)
    proc = airflow_env.dags_test("crowdtwist_loyalty_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    assert credit_requests() == credit_requests_before  # the rerun sent zero credit requests
    again = airflow_env.summaries("crowdtwist_loyalty_sync")
    assert_consistent(again["credit_events"])
    assert again["credit_events"]["counts"]["credited"] == 0
    assert again["credit_events"]["counts"]["skipped"] == len(good)
    assert len(sandbox.admin.credits()) == len(good)
    # state_path: members whose data did not change are not sent again.
    assert_consistent(again["sync_members"])
    assert again["sync_members"]["counts"]["created"] == 0
    assert again["sync_members"]["counts"]["updated"] == 0
    assert again["sync_members"]["counts"]["unchanged"] == len(clean)
    assert len(sandbox.admin.members()) == len(clean)


def test_loyalty_sync_from_sqlite_and_rerun(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    run_loyalty_sync(
        airflow_env, e2e_sandbox, sqlite_warehouse, warehouse_rows, tmp_path / "work", rerun=True
    )


@pytest.mark.postgres
def test_loyalty_sync_from_postgres(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    postgres_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    """The same rows in PostgreSQL's own types (DATE, TIMESTAMP, NUMERIC) give the same end state."""
    run_loyalty_sync(
        airflow_env, e2e_sandbox, postgres_warehouse, warehouse_rows, tmp_path / "work", rerun=False
    )


# ------------------------------------------------------------------------------------------------
# crowdtwist_member_file_sync


def test_member_file_sync_from_object_storage_url(
    airflow_env: AirflowEnv, e2e_sandbox: Any, warehouse_rows: WarehouseRows, tmp_path: Path
) -> None:
    members = warehouse_rows.members[:120]
    export = tmp_path / "bucket" / "members.csv"
    make_warehouse.write_csv(export, members, make_warehouse.MEMBER_COLUMNS)
    # A password column, as some exports carry for first logins: it must be sent, never shown.
    password = "Hunter2-e2e-Secret!"
    with export.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    for row in table:
        row["password"] = password
    with export.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*make_warehouse.MEMBER_COLUMNS, "password"])
        writer.writeheader()
        writer.writerows(table)

    work = tmp_path / "work"
    env = {
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_MEMBERS_URL": export.resolve().as_uri(),
    }
    proc = airflow_env.dags_test("crowdtwist_member_file_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)

    clean, rejected, superseded = expected_members(members)
    summary = airflow_env.summaries("crowdtwist_member_file_sync")["sync_members_from_file"]
    assert_consistent(summary)
    assert summary["rows_read"] == len(members)
    assert summary["counts"]["created"] == len(clean)
    assert summary["counts"]["rejected"] == rejected
    assert summary["counts"]["skipped"] == superseded
    assert_members_in_sandbox(e2e_sandbox, clean)
    stored = e2e_sandbox.admin.members()
    assert all(m["password_set"] for m in stored), "the password column was not sent"
    # unmapped_columns="ignore": the export's updated_at is not sent as a custom attribute.
    assert all("updated_at" not in (m.get("custom_data") or {}) for m in stored)
    assert rejected > 0 and Path(summary["rejects_path"]).is_file()

    everything = [proc.stdout, proc.stderr, json.dumps(summary)]
    for text in everything:
        assert password not in text
    for path in files_under(work, airflow_env.home / "logs"):
        assert password.encode() not in path.read_bytes(), f"the member password leaked into {path}"


# ------------------------------------------------------------------------------------------------
# crowdtwist_hmac_review_rewards


@pytest.fixture
def hmac_only_sandbox() -> Iterator[Any]:
    """A sandbox that accepts HMAC-signed requests only: an API-key request there is a 401."""
    with e2e_sandbox_running(auth_modes=("hmac",)) as server:
        yield server


def test_hmac_review_rewards_signs_every_request(
    airflow_env: AirflowEnv,
    hmac_only_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    env = {
        **sqlite_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_HMAC": hmac_conn(hmac_only_sandbox),
        "CROWDTWIST_DEMO_DIR": str(work),
    }
    proc = airflow_env.dags_test("crowdtwist_hmac_review_rewards", extra_env=env)
    assert proc.returncode == 0, explain(proc)

    reviews = [
        e for e in warehouse_rows.events_between(INTERVAL_START, INTERVAL_END) if e["activity_id"] == "review"
    ]
    assert reviews, "no reviews in the interval: the sample data changed"
    reviewers = {e["user_email"] for e in reviews}
    summaries = airflow_env.summaries("crowdtwist_hmac_review_rewards")
    assert summaries["upsert_reviewers"]["counts"]["created"] == len(reviewers)
    assert summaries["credit_reviews"]["counts"]["credited"] == len(reviews)
    awarded = hmac_only_sandbox.admin.credits()
    assert len(awarded) == len(reviews)
    assert {c["activity_id"] for c in awarded} == {"review"}
    assert sum(int(c["points"]) for c in awarded) == len(reviews) * DEFAULT_POINTS["review"]
    assert_no_secrets(proc.stdout, proc.stderr, paths=files_under(work, airflow_env.home / "logs"))
