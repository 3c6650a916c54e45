"""Assets and alerts in a real Airflow: a member sync triggers the DAG scheduled on the member asset,
and a failing sync mails its summary through Airflow's standard SMTP notifier.

Asset test: its own Airflow home (it unpauses a DAG and runs the scheduler, which must not touch the
session's home). The example DAGs are serialized, only ``crowdtwist_after_member_sync`` is unpaused,
and the default pool gets 0 slots so the scheduler creates runs but executes nothing. Then
``airflow dags test crowdtwist_member_file_sync`` syncs members into the sandbox, and the scheduler
(two loops) must create an asset-triggered run of the downstream DAG whose triggering event carries the
sync's counts -- read from the metadata DB, as the UI would show them.

Alert test: a real SMTP server (aiosmtpd) on a free loopback port receives the notifier's mail.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    AirflowEnv,
    airflow_major,
    api_key_conn,
    assert_no_secrets,
    explain,
    free_port,
)

pytestmark = pytest.mark.e2e

MEMBER_COLUMNS = ["user_id", "first_name", "last_name", "postal_code"]


def write_members(path: Path, rows: list[tuple[str, ...]], extra_columns: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join([*MEMBER_COLUMNS, *extra_columns]), *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def good_members(n: int) -> list[tuple[str, str, str, str]]:
    return [(f"asset{i}@example.com", "Asset", "Member", "02134") for i in range(n)]


def host_of(sandbox: Any) -> str:
    return sandbox.base_url.split("://", 1)[1]


@pytest.fixture
def own_airflow_env(airflow_env: AirflowEnv, tmp_path: Path) -> AirflowEnv:
    """A second, migrated Airflow home with the session's settings."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = dataclasses.replace(
        airflow_env, home=home, base_env={**airflow_env.base_env, "AIRFLOW_HOME": str(home)}
    )
    proc = env.run("db", "migrate", timeout=240)
    assert proc.returncode == 0, explain(proc)
    return env


def test_member_sync_triggers_the_dag_scheduled_on_the_member_asset(
    own_airflow_env: AirflowEnv, e2e_sandbox: Any, tmp_path: Path
) -> None:
    airflow = own_airflow_env
    export = tmp_path / "members.csv"
    # crowdtwist_member_file_sync maps four custom attributes: the export has those columns too
    custom = ("favorite_store", "loyalty_segment", "preferred_channel", "lifetime_value")
    write_members(
        export, [(*m, "Boston", "gold", "email", "10") for m in good_members(5)], extra_columns=custom
    )
    env = {
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "CROWDTWIST_DEMO_DIR": str(tmp_path / "work"),
        "CROWDTWIST_MEMBERS_URL": export.resolve().as_uri(),
        "CROWDTWIST_PROGRAM_HOST": host_of(e2e_sandbox),
    }
    for args in (
        ("dags", "reserialize"),
        ("dags", "unpause", "crowdtwist_after_member_sync"),
        ("pools", "set", "default_pool", "0", "the scheduler may create runs here, not execute them"),
    ):
        proc = airflow.run(*args, extra_env=env, timeout=240)
        assert proc.returncode == 0, explain(proc)

    proc = airflow.dags_test("crowdtwist_member_file_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    assert len(e2e_sandbox.admin.members()) == 5

    af3 = airflow_major() >= 3
    word = "asset" if af3 else "dataset"
    uri = f"crowdtwist://{host_of(e2e_sandbox)}/members"
    db = sqlite3.connect(airflow.home / "airflow.db")
    try:
        events = db.execute(
            f"SELECT e.id, e.extra FROM {word}_event e JOIN {word} a ON a.id = e.{word}_id WHERE a.uri = ?",
            (uri,),
        ).fetchall()
        assert len(events) == 1, events
        event_id, extra = events[0]
        extra = json.loads(extra)
        assert {k: v for k, v in extra.items() if v} == {
            "created": 5,
            "rows_read": 5,
            "requests_sent": 10,  # PUT 404 + POST for each new member
        }
        assert extra["rejected"] == 0 and extra["rejects_written"] == 0
    finally:
        db.close()

    proc = airflow.run("scheduler", "--num-runs", "2", extra_env=env, timeout=300)
    assert proc.returncode == 0, explain(proc)
    db = sqlite3.connect(airflow.home / "airflow.db")
    try:
        runs = db.execute(
            "SELECT run_id, run_type FROM dag_run WHERE dag_id = 'crowdtwist_after_member_sync'"
        ).fetchall()
        assert [r[1] for r in runs] == [f"{word}_triggered"], runs
        consumed = db.execute(
            f"SELECT event_id FROM dagrun_{word}_event d JOIN dag_run r ON r.id = d.dag_run_id "
            "WHERE r.dag_id = 'crowdtwist_after_member_sync'"
        ).fetchall()
        assert consumed == [(event_id,)]
        others = db.execute(
            "SELECT dag_id FROM dag_run WHERE dag_id != 'crowdtwist_member_file_sync'"
        ).fetchall()
        assert others == [("crowdtwist_after_member_sync",)]  # nothing else was scheduled
    finally:
        db.close()

    # The downstream DAG's own task reads the sync's counts from the asset event (inlet_events).
    proc = airflow.run("pools", "set", "default_pool", "16", "back to normal", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    proc = airflow.dags_test("crowdtwist_after_member_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    assert "latest member sync: 5 rows read, {'created': 5}" in proc.stdout + proc.stderr, explain(proc)


@dataclasses.dataclass
class SmtpServer:
    port: int
    messages: list[email.message.Message]
    received: threading.Event


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on a free loopback port, collecting what it receives."""
    from aiosmtpd.controller import Controller

    messages: list[email.message.Message] = []
    received = threading.Event()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(email.message_from_bytes(envelope.content))
            received.set()
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port=port, messages=messages, received=received)
    finally:
        controller.stop()


def body_text(message: email.message.Message) -> str:
    parts = [p for p in message.walk() if p.get_content_type() == "text/html"]
    payload = parts[0].get_payload()
    if parts[0].get("Content-Transfer-Encoding") == "base64":
        return base64.b64decode(payload).decode("utf-8")
    return str(payload)


def test_a_mostly_rejected_sync_mails_its_summary_through_the_smtp_notifier(
    airflow_env: AirflowEnv, e2e_sandbox: Any, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    export = tmp_path / "members.csv"
    write_members(export, [*good_members(2), *[(f"broken{i}", "B", "C", "02134") for i in range(3)]])
    work = tmp_path / "work"
    env = {
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10},
            }
        ),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_MEMBERS_URL": export.resolve().as_uri(),
        "CROWDTWIST_ALERT_TO": "oncall@example.com",
        "CROWDTWIST_ALERT_FROM": "airflow@example.com",
    }
    proc = airflow_env.dags_test("crowdtwist_member_sync_alerts", extra_env=env)
    assert proc.returncode != 0, "3 of 5 rows rejected must fail the task (max_rejected_ratio=0.2)"
    assert smtp_server.received.wait(30), f"no mail arrived\n{explain(proc)}"
    (message,) = smtp_server.messages
    assert message["To"] == "oncall@example.com" and message["From"] == "airflow@example.com"
    assert (
        message["Subject"]
        == "CrowdTwist sync failed: crowdtwist_member_sync_alerts.sync_members (2026-11-22)"
    )
    text = body_text(message)
    rejects = work / "rejects" / "alerted-members-2026-11-22.jsonl"
    assert text == (
        "<p>sync_members: FAILED (3 of 5 row(s) were rejected (60.0%), more than max_rejected_ratio=0.2): "
        f"5 rows read: 2 created, 3 rejected; 3 row(s) to look at in {rejects}</p>"
    )
    assert rejects.read_text().count("\n") == 3
    assert_no_secrets(proc.stdout, proc.stderr, text)


def alert_env(sandbox: Any, smtp: SmtpServer, export: Path, work: Path) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(sandbox),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10},
            }
        ),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_MEMBERS_URL": export.resolve().as_uri(),
        "CROWDTWIST_ALERT_TO": "oncall@example.com",
        "CROWDTWIST_ALERT_FROM": "airflow@example.com",
    }


def test_alerts_fire_on_a_change_of_status_only_failed_then_recovered(
    airflow_env: AirflowEnv, e2e_sandbox: Any, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Three daily runs: fails, fails again, succeeds -> exactly two mails: failed, then recovered.

    The previous run's status comes from Airflow (the previous run's ``summary`` XCom, read by the
    operator). The dates are before RUN_DATE, so the other alert test's run (RUN_DATE, same DAG, same
    Airflow home) is never a "previous run" of these, whichever test runs first.
    """
    export, work = tmp_path / "members.csv", tmp_path / "work"
    env = alert_env(e2e_sandbox, smtp_server, export, work)
    good = [(f"recover{i}@example.com", "Re", "Cover", "02134") for i in range(3)]
    broken = [(f"broken{i}", "B", "C", "02134") for i in range(3)]
    runs = [
        ("2026-10-01", [*good[:1], *broken], False),  # 3 of 4 rejected: above max_rejected_ratio
        ("2026-10-02", broken, False),  # every row rejected: failed again, no mail
        ("2026-10-03", good, True),  # all good: recovered
    ]
    for date, rows, succeeds in runs:
        write_members(export, rows)
        proc = airflow_env.dags_test("crowdtwist_member_sync_alerts", extra_env=env, run_date=date)
        assert (proc.returncode == 0) is succeeds, explain(proc)
        assert_no_secrets(proc.stdout, proc.stderr)
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert subjects == [
        "CrowdTwist sync failed: crowdtwist_member_sync_alerts.sync_members (2026-10-01)",
        "CrowdTwist sync recovered: crowdtwist_member_sync_alerts.sync_members (2026-10-03)",
    ], subjects
    failed, recovered = (body_text(m) for m in smtp_server.messages)
    assert failed.startswith("<p>sync_members: FAILED (3 of 4 row(s) were rejected (75.0%)"), failed
    assert recovered.startswith("<p>sync_members: ok: 3 rows read: "), recovered
    for message in smtp_server.messages:
        assert message["To"] == "oncall@example.com"


def test_the_slack_example_runs_without_the_slack_provider_and_logs_the_alert(
    airflow_env: AirflowEnv, e2e_sandbox: Any, tmp_path: Path
) -> None:
    """``crowdtwist_member_sync_slack_alerts`` with no Slack provider installed: the sync runs, fails
    (every row rejected) and the alert it would have posted is in the task log, with what to install."""
    try:
        import airflow.providers.slack  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the Slack provider is installed here: the fallback is not used")
    export, work = tmp_path / "members.csv", tmp_path / "work"
    write_members(export, [(f"slackbroken{i}", "B", "C", "02134") for i in range(2)])
    env = {
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_MEMBERS_URL": export.resolve().as_uri(),
    }
    proc = airflow_env.dags_test("crowdtwist_member_sync_slack_alerts", extra_env=env)
    assert proc.returncode != 0, "every row rejected must fail the task"
    logs = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (airflow_env.home / "logs").rglob("*")
        if p.is_file() and "crowdtwist_member_sync_slack_alerts" in str(p)
    )
    output = proc.stdout + proc.stderr + logs
    assert "apache-airflow-providers-slack is not installed" in output, explain(proc)
    assert "CrowdTwist sync failed: sync_members: FAILED (every row was rejected or failed" in output
