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

from airflow_provider_crowdtwist._compat import AirflowException
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


def test_the_task_updates_its_asset() -> None:
    op = CrowdTwistLivePushLoadOperator(
        task_id="t", source_path="/x", sql_conn_id="w", table="members_live", feed="profile"
    )
    assert [o.uri for o in op.outlets] == ["crowdtwist://live-push/profile/members_live"]


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
    with pytest.raises(AirflowException, match="1 live push line"):
        op.execute({})
    assert sqlite3.connect(warehouse).execute("SELECT user_activity_id FROM acts").fetchall() == [("1",)]
    assert "line 2: column points (points): not a number: 'ten'" in rejects.read_text()
    land(feed_dir, "activity-2.jsonl", [sample_activity(3) | {"points": "x"}])
    op.max_rejected = 1
    assert op.execute({})["rejected"] == 1  # within max_rejected: the task succeeds
