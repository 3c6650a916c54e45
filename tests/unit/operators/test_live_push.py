"""CrowdTwistLivePushLoadOperator: argument checks at parse time, its asset, and ``execute`` on SQLite.

``execute`` runs for real: the SQLite connection comes from ``AIRFLOW_CONN_*`` through common.sql, the
files are real, local and behind a ``file://`` URL (Airflow's ``ObjectStoragePath``). Runs on Airflow 3
(``.venv``) and 2 (``.venv-af2``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_crowdtwist._compat import AirflowException, AirflowFailException
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile
from airflow_provider_crowdtwist.operators.live_push import CrowdTwistLivePushLoadOperator

CONN_ID = "live_push_warehouse_test"


def land(directory: Path, name: str, pushes: list[dict], extra_lines: tuple[str, ...] = ()) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"received_at": 1.0 + i, "push": p}) for i, p in enumerate(pushes)]
    (directory / name).write_text("\n".join([*lines, *extra_lines]) + "\n")


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "warehouse.db"
    conn = {"conn_type": "sqlite", "host": str(db)}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return db


def test_arguments_are_checked_when_the_dag_is_parsed() -> None:
    base = {"task_id": "t", "source_path": "/x", "sql_conn_id": "w", "table": "t"}
    with pytest.raises(ValueError, match="feed must be one of"):
        CrowdTwistLivePushLoadOperator(**base, feed="redemption")
    with pytest.raises(ValueError, match="is not a table name"):
        CrowdTwistLivePushLoadOperator(**{**base, "table": "t; drop table x"})
    with pytest.raises(ValueError, match="max_rejected"):
        CrowdTwistLivePushLoadOperator(**base, max_rejected=-1)
    with pytest.raises(ValueError, match="sql_conn_id"):
        CrowdTwistLivePushLoadOperator(**{**base, "sql_conn_id": ""})


def test_the_asset_names_the_database_and_is_named_at_run_time(warehouse: Path, tmp_path: Path) -> None:
    op = CrowdTwistLivePushLoadOperator(
        task_id="t", source_path=str(tmp_path / "none"), sql_conn_id=CONN_ID, table="members_live"
    )
    from airflow_provider_crowdtwist.operators._outcome import airflow_3

    if airflow_3():  # the database is in the connection, read only at run time: an alias until then
        assert [type(o).__name__ for o in op.outlets] == ["AssetAlias"]
    database = str(warehouse).replace("/", "%2F")
    assert op.execute({})["asset_uri"] == f"crowdtwist://live-push/profile/{database}/members_live"
    from airflow_provider_crowdtwist.assets import live_push_database

    assert live_push_database("postgres", "DB.example.com", None, "dw") == "dw@db.example.com:5432"


class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def test_parity_with_the_syncs_summary_text_templated_conn_and_thresholds(
    warehouse: Path, tmp_path: Path
) -> None:
    assert "sql_conn_id" in CrowdTwistLivePushLoadOperator.template_fields
    feed_dir = tmp_path / "out" / "activity"
    base = {"task_id": "load", "source_path": str(feed_dir), "sql_conn_id": CONN_ID, "table": "acts"}
    with pytest.raises(ValueError, match="max_rejected_ratio"):
        CrowdTwistLivePushLoadOperator(**base, feed="activity", max_rejected_ratio=2)
    with pytest.raises(ValueError, match="min_rows"):
        CrowdTwistLivePushLoadOperator(**base, feed="activity", min_rows=-1)

    # nothing landed: min_rows=1 warns by default, fails with min_rows_action="fail"
    ti = FakeTI()
    summary = CrowdTwistLivePushLoadOperator(**base, feed="activity").execute({"ti": ti})
    assert ti.xcom["summary"] == summary and "WARNING" in summary["text"] and "min_rows=1" in summary["text"]
    with pytest.raises(AirflowFailException, match="fewer than min_rows=1"):
        CrowdTwistLivePushLoadOperator(**base, feed="activity", min_rows_action="fail").execute(
            {"ti": FakeTI()}
        )

    # 1 of 4 rejected: max_rejected=5 lets it pass, max_rejected_ratio=0.2 fails it, summary pushed first
    pushes = [
        sample_activity(1),
        sample_activity(2),
        sample_activity(3),
        sample_activity(4) | {"points": "x"},
    ]
    land(feed_dir, "activity-1.jsonl", pushes)
    ti = FakeTI()
    op = CrowdTwistLivePushLoadOperator(**base, feed="activity", max_rejected=5, max_rejected_ratio=0.2)
    with pytest.raises(AirflowFailException, match=r"1 of 4 row\(s\) were rejected \(25.0%\)"):
        op.execute({"ti": ti})
    text = ti.xcom["summary"]["text"]
    assert text.startswith("load (live push activity -> acts): FAILED") and "3 loaded, 1 rejected" in text
    land(feed_dir, "activity-2.jsonl", pushes)
    ti = FakeTI()
    summary = CrowdTwistLivePushLoadOperator(**base, feed="activity", max_rejected=5).execute({"ti": ti})
    assert summary["status"] == "ok" and ti.xcom["summary"]["text"].startswith(
        "load (live push activity -> acts): ok"
    )


def test_sql_conn_id_is_rendered(warehouse: Path, tmp_path: Path) -> None:
    feed_dir = tmp_path / "out" / "profile"
    land(feed_dir, "profile-1.jsonl", [sample_profile(1)])
    op = CrowdTwistLivePushLoadOperator(
        task_id="t", source_path=str(feed_dir), sql_conn_id="{{ params.conn }}", table="m"
    )
    op.render_template_fields({"params": {"conn": CONN_ID}})
    assert op.sql_conn_id == CONN_ID and op.execute({})["loaded"] == 1


@pytest.mark.parametrize("as_url", [False, True])
def test_execute_loads_profiles_and_moves_the_files(warehouse: Path, tmp_path: Path, as_url: bool) -> None:
    feed_dir = tmp_path / "out" / "profile"
    land(feed_dir, "profile-1.jsonl", [sample_profile(1, version=1), sample_profile(1, version=2, points=7)])
    source = f"file://{feed_dir}" if as_url else str(feed_dir)
    op = CrowdTwistLivePushLoadOperator(
        task_id="load", source_path=source, sql_conn_id=CONN_ID, table="members_live", feed="profile"
    )
    result = op.execute({})
    assert (result["rows_read"], result["loaded"], result["rejected"], result["files_loaded"]) == (2, 2, 0, 1)
    assert (feed_dir / "loaded" / "profile-1.jsonl").is_file() and not (feed_dir / "profile-1.jsonl").exists()
    rows = sqlite3.connect(warehouse).execute("SELECT member_id, total_points FROM members_live").fetchall()
    assert rows == [(1, 7)]
    assert op.execute({})["files_loaded"] == 0  # nothing new: nothing loaded


def test_rejected_lines_fail_the_task_after_the_good_ones_loaded(warehouse: Path, tmp_path: Path) -> None:
    feed_dir = tmp_path / "out" / "activity"
    land(feed_dir, "activity-1.jsonl", [sample_activity(1), sample_activity(2) | {"points": "ten"}])
    rejects = tmp_path / "rejects.jsonl"
    op = CrowdTwistLivePushLoadOperator(
        task_id="load", source_path=str(feed_dir), sql_conn_id=CONN_ID, table="acts", feed="activity",
        rejects_path=str(rejects),
    )  # fmt: skip
    with pytest.raises(AirflowException, match=r"1 line\(s\) rejected, more than max_rejected=0"):
        op.execute({})
    assert sqlite3.connect(warehouse).execute("SELECT user_activity_id FROM acts").fetchall() == [("1",)]
    assert "line 2: column points (points): not a number: 'ten'" in rejects.read_text()
    land(feed_dir, "activity-2.jsonl", [sample_activity(3) | {"points": "x"}])
    op.max_rejected = 1
    assert op.execute({})["rejected"] == 1  # within max_rejected: the task succeeds


def test_openlineage_reports_the_loaded_table_as_output(warehouse: Path, tmp_path: Path) -> None:
    pytest.importorskip("airflow.providers.openlineage", reason="the openlineage provider: test group")
    feed_dir = tmp_path / "out" / "profile"
    land(feed_dir, "profile-1.jsonl", [sample_profile(1), sample_profile(2)], extra_lines=("not json",))
    rejects = tmp_path / "rejects.jsonl"
    op = CrowdTwistLivePushLoadOperator(
        task_id="t", source_path=str(feed_dir), sql_conn_id=CONN_ID, table="m", rejects_path=str(rejects),
        max_rejected=1,
    )  # fmt: skip
    op.execute({})
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(feed_dir))]
    outputs = {(d.namespace, d.name): d.outputFacets["outputStatistics"].rowCount for d in lineage.outputs}
    assert outputs == {(f"sqlite://{warehouse}", "m"): 2, ("file", str(rejects)): 1}
    from types import SimpleNamespace

    from airflow_provider_crowdtwist.operators.live_push import table_dataset_name

    pg = SimpleNamespace(conn_type="postgres", host="DB", port=None, schema="dw")
    assert table_dataset_name(pg, "loyalty.members") == ("postgres://db:5432", "dw.loyalty.members")
    assert table_dataset_name(pg, "members") == ("postgres://db:5432", "dw.public.members")
