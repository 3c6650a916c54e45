"""How both sync operators end a run: the ``summary`` XCom with its text, volume checks, asset events,
templated connection ids, ``sql_hook_params`` and ``progress_interval``.

``execute`` runs for real against the in-process sandbox (connections from ``AIRFLOW_CONN_*``); the task
instance and the outlet-event accessor are stand-ins that record what the operator hands to Airflow
(the real Airflow path is covered by ``tests/e2e/test_assets_and_alerts.py``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowFailException
from airflow_provider_crowdtwist.operators._outcome import airflow_3, alias_name
from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CONN_ID = "crowdtwist_outcome_test"
AIRFLOW_3 = airflow_3()


class FakeTaskInstance:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.dag_id = "outcome"
        self.run_id = "manual__1"
        self.try_number = 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))


class RecordingOutletEvents:
    """What ``context["outlet_events"]`` is to the operator: ``[alias].add(asset, extra=...)`` on
    Airflow 3, ``[dataset].extra`` on Airflow 2. ``added`` lists (outlet, asset uri, extra)."""

    def __init__(self) -> None:
        self.accessors: list[tuple[Any, Any]] = []
        self.alias_events: list[tuple[Any, str, dict[str, Any]]] = []

    def __getitem__(self, key: Any) -> Any:
        events = self

        class _Accessor:
            def __init__(self) -> None:
                self.extra: dict[str, Any] = {}

            def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
                events.alias_events.append((key, asset.uri, dict(extra or {})))

        accessor = _Accessor()
        self.accessors.append((key, accessor))
        return accessor

    @property
    def added(self) -> list[tuple[Any, str, dict[str, Any]]]:
        direct = [(k, k.uri, a.extra) for k, a in self.accessors if a.extra and hasattr(k, "uri")]
        return [*self.alias_events, *direct]


def context(task_id: str) -> dict[str, Any]:
    return {"ti": FakeTaskInstance(task_id), "outlet_events": RecordingOutletEvents()}


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": {"requests_per_minute": 0},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


def members(n: int) -> list[dict[str, Any]]:
    return [
        {"user_id": f"out{i}@example.com", "first_name": "Out", "last_name": "Come", "postal_code": "02134"}
        for i in range(n)
    ]


def member_op(**kwargs: Any) -> CrowdTwistUserSyncOperator:
    kwargs.setdefault("rows", members(3))
    return CrowdTwistUserSyncOperator(task_id="sync_members", crowdtwist_conn_id=CONN_ID, **kwargs)


def host_of(sandbox: Any) -> str:
    return sandbox.base_url.split("://", 1)[1]


def test_success_pushes_the_summary_with_a_text_under_the_summary_key(conn: Any, tmp_path: Path) -> None:
    ctx = context("sync_members")
    rejects = tmp_path / "rejects.jsonl"
    rows = [*members(3), {"user_id": "not-an-email", "first_name": "X"}]
    result = member_op(rows=rows, rejects_path=str(rejects)).execute(ctx)
    pushed = ctx["ti"].xcom["summary"]
    assert pushed == result
    # 1 of 4 rejected is above the default degraded threshold (10 %): a success, degraded
    assert pushed["status"] == "degraded" and pushed["previous_status"] is None
    assert pushed["text"] == (
        "sync_members: DEGRADED (1 of 4 row(s) were rejected (25.0%), more than "
        f"degraded_rejected_ratio=0.1): 4 rows read: 3 created, 1 rejected; 1 row(s) to look at in {rejects}"
    )


def test_a_run_adds_the_member_asset_with_counts(conn: Any) -> None:
    op = member_op()
    ctx = context("sync_members")
    if AIRFLOW_3:  # an alias declared at parse time, the asset added through it
        (outlet,) = op.outlets
        assert outlet.name == alias_name(CONN_ID, "members") == f"crowdtwist:{CONN_ID}:members"
        op.execute(ctx)
    else:  # Airflow 2: the dataset joins the running task's outlets
        assert op.outlets == []
        op.execute(ctx)
        (outlet,) = op.outlets
        assert outlet.uri == f"crowdtwist://{host_of(conn)}/members"
    ((key, uri, extra),) = ctx["outlet_events"].added
    assert key is outlet
    assert uri == f"crowdtwist://{host_of(conn)}/members"
    assert {k: v for k, v in extra.items() if v} == {"created": 3, "rows_read": 3, "requests_sent": 6}
    assert extra["rejected"] == 0 and extra["updated"] == 0 and extra["rejects_written"] == 0
    assert all(isinstance(v, int) for v in extra.values())  # flat: Airflow 2 hashes alias extras


def test_dry_run_and_explicit_outlets_add_no_event(conn: Any) -> None:
    ctx = context("sync_members")
    member_op(dry_run=True).execute(ctx)
    assert ctx["outlet_events"].added == []
    from airflow.providers.common.compat.sdk import Asset

    ctx = context("sync_members")
    op = member_op(outlets=[Asset("crowdtwist://example.com/members")])
    op.execute(ctx)
    assert ctx["outlet_events"].added == []  # the user's own outlets get Airflow's own event


def test_zero_rows_warns_by_default_and_fails_when_asked(conn: Any) -> None:
    ctx = context("sync_members")
    result = member_op(rows=[]).execute(ctx)
    assert result["warnings"] == ["the source gave 0 row(s), fewer than min_rows=1"]
    assert result["text"] == (
        "sync_members: ok, WARNING (the source gave 0 row(s), fewer than min_rows=1): "
        "0 rows read: nothing to do"
    )
    ctx = context("sync_members")
    with pytest.raises(AirflowFailException, match="fewer than min_rows=5"):
        member_op(min_rows=5, min_rows_action="fail").execute(ctx)
    pushed = ctx["ti"].xcom["summary"]
    assert pushed["counts"]["created"] == 3
    assert pushed["text"].startswith("sync_members: FAILED (the source gave 3 row(s), fewer than min_rows=5)")


def test_a_mostly_rejected_run_fails_with_the_summary_pushed(conn: Any, tmp_path: Path) -> None:
    ctx = context("sync_members")
    rows = [*members(1), {"user_id": "bad1"}, {"user_id": "bad2"}]
    rejects = tmp_path / "r.jsonl"
    op = member_op(rows=rows, max_rejected_ratio=0.5, rejects_path=str(rejects), max_failed_ratio=1.0)
    with pytest.raises(AirflowFailException, match="2 of 3 row"):
        op.execute(ctx)
    text = ctx["ti"].xcom["summary"]["text"]
    assert "more than max_rejected_ratio=0.5" in text and "1 created, 2 rejected" in text
    assert str(rejects) in text
    assert ctx["outlet_events"].added == []


def test_engine_failures_push_the_same_summary_with_a_text(conn: Any) -> None:
    ctx = context("sync_members")
    with pytest.raises(Exception, match="max_failed_rows=0"):
        member_op(rows=[*members(1), {"user_id": "x"}], max_failed_rows=0).execute(ctx)
    text = ctx["ti"].xcom["summary"]["text"]
    assert text.startswith("sync_members: FAILED (") and "1 created, 1 rejected" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rows": -1}, "min_rows"),
        ({"min_rows_action": "page"}, "min_rows_action"),
        ({"max_rejected_ratio": 2}, "max_rejected_ratio"),
        ({"progress_interval": 0}, "progress_interval"),
    ],
)
def test_bad_alert_settings_fail_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        member_op(**kwargs)


def test_connection_ids_and_hook_params_are_templated() -> None:
    for cls in (CrowdTwistUserSyncOperator, CrowdTwistActivityCreditOperator):
        assert {"crowdtwist_conn_id", "sql_conn_id", "sql_hook_params"} <= set(cls.template_fields)


def test_sql_hook_params_reach_the_sql_hook_and_progress_interval_the_engine(
    conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE m (user_id TEXT, first_name TEXT, last_name TEXT, postal_code TEXT)")
        connection.executemany(
            "INSERT INTO m VALUES (?, ?, ?, ?)", [(f"h{i}@example.com", "H", "P", "02134") for i in range(4)]
        )
    monkeypatch.setenv("AIRFLOW_CONN_OUTCOME_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    seen: list[dict[str, Any]] = []
    original = SqliteHook.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(dict(kwargs))
        original(self, *args, **kwargs)

    monkeypatch.setattr(SqliteHook, "__init__", recording_init)
    op = member_op(
        rows=None,
        sql="SELECT * FROM m",
        sql_conn_id="outcome_warehouse",
        sql_hook_params={"log_sql": False},
        progress_interval=0.25,
    )
    assert op._sync_config().progress_interval == 0.25
    assert op.execute(context("sync_members"))["counts"]["created"] == 4
    assert {"log_sql": False}.items() <= seen[0].items()
    with pytest.raises(AirflowFailException, match="sql_hook_params must be a dict"):
        member_op(rows=None, sql="SELECT 1", sql_conn_id="outcome_warehouse", sql_hook_params="x").execute(
            context("sync_members")
        )


def test_credit_asset_names_the_activity_or_all_activities(
    conn: Any, client_for: Any, tmp_path: Path
) -> None:
    client = client_for(conn)
    client.create_user(
        {"first_name": "A", "last_name": "B", "email_address": "c@example.com", "postal_code": "02134"}
    )
    rows = [{"email": "c@example.com", "event_id": f"e{i}", "activity": "purchase"} for i in range(2)]
    fixed = CrowdTwistActivityCreditOperator(
        task_id="credit",
        crowdtwist_conn_id=CONN_ID,
        rows=rows,
        id_column="email",
        activity_id="purchase",
        dedupe_key_column="event_id",
        ledger_path=str(tmp_path / "l1.sqlite"),
    )
    if AIRFLOW_3:
        assert fixed.outlets[0].name == f"crowdtwist:{CONN_ID}:activities"
    ctx = context("credit")
    fixed.execute(ctx)
    ((_, uri, extra),) = ctx["outlet_events"].added
    assert uri == f"crowdtwist://{host_of(conn)}/activities/purchase"
    assert extra["credited"] == 2 and extra["rows_read"] == 2
    assert ctx["ti"].xcom["summary"]["text"].startswith("credit: ok: 2 rows read: 2 credited")
    per_row = CrowdTwistActivityCreditOperator(
        task_id="credit2",
        crowdtwist_conn_id=CONN_ID,
        rows=[{**r, "event_id": r["event_id"] + "b"} for r in rows],
        id_column="email",
        activity_id_column="activity",
        dedupe_key_column="event_id",
        ledger_path=str(tmp_path / "l2.sqlite"),
    )
    ctx = context("credit2")
    per_row.execute(ctx)
    ((_, uri, _),) = ctx["outlet_events"].added
    assert uri == f"crowdtwist://{host_of(conn)}/activities"
