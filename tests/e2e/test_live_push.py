"""The whole loop, warehouse -> CrowdTwist -> warehouse, in a real Airflow.

A member sync and a credit sync (the loyalty DAG, from SQLite) change members in the sandbox; the
sandbox pushes every changed profile and every awarded credit to a live push receiver (a child
process); the example DAG ``crowdtwist_live_push_load`` lands the feeds in SQLite and in PostgreSQL.
The profile table must equal the sandbox's members and the activity table its awarded credits.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.e2e.conftest import (
    E2E_API_KEY,
    E2E_HMAC_PRIVATE,
    E2E_HMAC_PUBLIC,
    AirflowEnv,
    PostgresServer,
    WarehouseRows,
    api_key_conn,
    assert_no_secrets,
    explain,
    files_under,
    make_warehouse,
)

pytestmark = pytest.mark.e2e

RECEIVER_KEY = "lp_e2e_key_4b8c1d9e7f2a6b3c5d0e8f1a"
PROFILE_TABLE = "crowdtwist_members_live"
ACTIVITY_TABLE = "crowdtwist_activities_live"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    with ReceiverProcess(
        tmp_path / "live-push", api_key=RECEIVER_KEY, extra_args=["--roll-seconds", "1"]
    ) as rx:
        yield rx


@pytest.fixture
def us_postal_only_warehouse(tmp_path: Path, warehouse_rows: WarehouseRows) -> dict[str, str]:
    """The sample warehouse with US members located by postal code alone.

    O:UserCreate: "for domestic addresses ONLY postal_code can be provided", and the sandbox refuses a
    US postal code sent with a country code. What this test is about is the push back, not the member
    mapping's location rules, so the rows are the ones every reading of that rule accepts.
    """
    members = [
        {**m, "country_code": None} if m["country_code"] == "US" and m["postal_code"] else m
        for m in warehouse_rows.members
    ]
    db = tmp_path / "warehouse.db"
    make_warehouse.write_sqlite(db, members, warehouse_rows.events)
    return {"AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(db)})}


@pytest.fixture
def pushing_sandbox(receiver: ReceiverProcess) -> Iterator[SandboxServer]:
    """A sandbox configured, like a CrowdTwist program, to push both feeds to the receiver."""
    server = SandboxServer(
        api_key=E2E_API_KEY,
        hmac_public_key=E2E_HMAC_PUBLIC,
        hmac_private_key=E2E_HMAC_PRIVATE,
        push_profile_url=f"{receiver.url}/push/profile",
        push_activity_url=f"{receiver.url}/push/activity",
        push_api_key=RECEIVER_KEY,
        push_retry_interval_s=0.2,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def load(airflow_env: AirflowEnv, source: Path, conn: dict[str, Any], work: Path) -> dict[str, Any]:
    env = {
        "AIRFLOW_CONN_LIVE_WAREHOUSE": json.dumps(conn),
        "CROWDTWIST_LIVE_PUSH_CONN_ID": "live_warehouse",
        "CROWDTWIST_LIVE_PUSH_URL": f"file://{source}",
        "CROWDTWIST_DEMO_DIR": str(work),
    }
    proc = airflow_env.dags_test("crowdtwist_live_push_load", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    summaries = airflow_env.summaries("crowdtwist_live_push_load")
    for task in ("load_profiles", "load_activities"):
        summary = summaries[task]
        assert summary["rows_read"] == summary["loaded"] + summary["rejected"], summary
        assert summary["rejected"] == 0, summary
    assert not list(source.glob("*/*.jsonl"))  # every landed file moved to loaded/
    assert_no_secrets(proc.stdout, proc.stderr, json.dumps(summaries), paths=files_under(work))
    assert RECEIVER_KEY not in proc.stdout + proc.stderr
    return summaries


def expected_tables(sandbox: SandboxServer) -> tuple[dict[int, tuple], dict[str, tuple]]:
    members = {
        int(m["id"]): (
            m["email_address"],
            m["first_name"],
            m["last_name"],
            int(m["total_points"]),
            int(m["redeemable_points"]),
            m.get("custom_data") or None,
        )
        for m in sandbox.admin.members()
    }
    credits = {
        str(c["seq"]): (int(c["user_id"]), c["activity_id"], int(c["points"]), c["extra_data"])
        for c in sandbox.admin.credits()
    }
    return members, credits


def fresh_database(server: PostgresServer, name: str) -> None:
    admin = server.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, Decimal, float)) else int(str(value))


def table_rows(cursor: Any) -> tuple[dict[int, tuple], dict[str, tuple]]:
    cursor.execute(
        f"SELECT member_id, email_address, first_name, last_name, total_points, redeemable_points,"
        f" custom_data FROM {PROFILE_TABLE}"
    )
    members = {int(r[0]): (r[1], r[2], r[3], _int(r[4]), _int(r[5]), _json(r[6])) for r in cursor.fetchall()}
    cursor.execute(
        f"SELECT user_activity_id, user_id, activity_id, points, activity_extra_data FROM {ACTIVITY_TABLE}"
    )
    credits = {str(r[0]): (int(r[1]), r[2], _int(r[3]), _json(r[4])) for r in cursor.fetchall()}
    return members, credits


@pytest.mark.postgres
def test_syncs_change_the_sandbox_and_the_pushes_land_in_sqlite_and_postgres(
    airflow_env: AirflowEnv,
    pushing_sandbox: SandboxServer,
    receiver: ReceiverProcess,
    us_postal_only_warehouse: dict[str, str],
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    sandbox = pushing_sandbox
    env = {
        **us_postal_only_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(sandbox),
        "CROWDTWIST_DEMO_DIR": str(tmp_path / "work"),
    }
    proc = airflow_env.dags_test("crowdtwist_loyalty_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    sandbox.state.settle(everything=True)  # awards still in the award lag are applied (and pushed) now
    assert sandbox.pusher.wait_idle(60), sandbox.pusher.stats.as_dict()
    stats = sandbox.pusher.stats
    receiver.stop()  # SIGTERM: the open files are published
    members, credits = expected_tables(sandbox)
    assert len(members) > 200 and len(credits) > 100  # the syncs did change the sandbox
    assert stats.acknowledged["activity"] == len(credits) and stats.gave_up == 0

    out = tmp_path / "live-push"
    pg_copy = tmp_path / "live-push-pg"
    shutil.copytree(out, pg_copy, ignore=shutil.ignore_patterns("_spool"))

    db = tmp_path / "live.db"
    first = load(airflow_env, out, {"conn_type": "sqlite", "host": str(db)}, tmp_path / "work-sqlite")
    assert first["load_activities"]["loaded"] == stats.acknowledged["activity"]
    with sqlite3.connect(db) as con:
        assert table_rows(con.cursor()) == (members, credits)

    fresh_database(postgres_server, "live")
    pg_conn = {
        "conn_type": "postgres",
        "host": postgres_server.host,
        "port": postgres_server.port,
        "login": postgres_server.user,
        "schema": "live",
    }
    load(airflow_env, pg_copy, pg_conn, tmp_path / "work-pg")
    con = postgres_server.connect("live")
    try:
        with con.cursor() as cur:
            assert table_rows(cur) == (members, credits)
            cur.execute(
                "SELECT pg_typeof(date_last_updated)::text, pg_typeof(custom_data)::text"
                f" FROM {PROFILE_TABLE} LIMIT 1"
            )
            assert cur.fetchone() == ("timestamp with time zone", "jsonb")
    finally:
        con.close()
    assert RECEIVER_KEY not in receiver.log_text()


@pytest.mark.postgres
def test_postgres_upsert_keeps_the_newest_version_and_is_idempotent(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The PostgreSQL dialect on its own (no Airflow): schema.table, TIMESTAMPTZ/JSONB, order-free."""
    from airflow_provider_crowdtwist.livepush.dialects import POSTGRES
    from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
    from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile

    fresh_database(postgres_server, "live_unit")
    src = tmp_path / "profile"
    src.mkdir()
    newer, older = sample_profile(1, version=9, points=90), sample_profile(1, version=1, points=10)
    (src / "profile-1.jsonl").write_text(json.dumps({"received_at": 1.0, "push": newer}) + "\n")
    (src / "profile-2.jsonl").write_text(json.dumps({"received_at": 2.0, "push": older}) + "\n")
    acts = tmp_path / "activity"
    acts.mkdir()
    (acts / "activity-1.jsonl").write_text(
        "".join(json.dumps({"received_at": 1.0, "push": sample_activity(i)}) + "\n" for i in (1, 2, 1))
    )
    con = postgres_server.connect("live_unit")
    try:
        with con.cursor() as cur:
            cur.execute("CREATE SCHEMA loyalty")
        con.commit()
        for _ in range(2):  # the second load finds the files again (moved back): nothing changes
            LiveFeedLoader(con, POSTGRES, feed="profile", table="loyalty.members").load(src)
            LiveFeedLoader(con, POSTGRES, feed="activity", table="loyalty.acts").load(acts)
            for directory in (src, acts):
                for moved in (directory / "loaded").iterdir():
                    moved.rename(directory / moved.name)
        with con.cursor() as cur:
            cur.execute("SELECT member_id, total_points, custom_data, tier_date_reached FROM loyalty.members")
            [(member, points, custom, reached)] = cur.fetchall()
            assert (member, points) == (1, 90)
            assert custom == {"employee_id": "employee1", "register_id": "1"}
            assert reached.isoformat() == "2017-03-23T19:00:00+00:00"
            cur.execute("SELECT user_activity_id, points FROM loyalty.acts ORDER BY 1")
            assert cur.fetchall() == [("1", 10), ("2", 10)]
    finally:
        con.close()
