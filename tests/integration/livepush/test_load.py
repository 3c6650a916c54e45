"""The loading engine on SQLite files: newest version kept, idempotent, rejects named, files moved."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile


def write(path: Path, pushes: list[tuple[float, dict]], raw_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"received_at": at, "push": push}) for at, push in pushes] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def table(db: sqlite3.Connection, sql: str) -> list[tuple]:
    return db.execute(sql).fetchall()


def test_profiles_keep_the_newest_version_and_reloading_changes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "profile"
    # the newer version lands in the *older* file: order of files must not matter
    write(
        src / "profile-1.jsonl", [(10.0, sample_profile(1, version=5, points=50)), (11.0, sample_profile(2))]
    )
    write(src / "profile-2.jsonl", [(20.0, sample_profile(1, version=1, points=10))])
    db = sqlite3.connect(tmp_path / "w.db")
    loader = LiveFeedLoader(db, SQLITE, feed="profile", table="members_live")
    summary = loader.load(src)
    assert (summary.rows_read, summary.loaded, summary.rejected) == (3, 3, 0)
    assert summary.files == ["profile-1.jsonl", "profile-2.jsonl"]
    assert sorted(p.name for p in (src / "loaded").iterdir()) == summary.files
    assert not list(src.glob("*.jsonl"))
    rows = table(
        db,
        "SELECT member_id, total_points, date_last_updated, tier_current_level_title,"
        " tier_next_level_min_value, tier_date_reached, custom_data, received_at"
        " FROM members_live ORDER BY member_id",
    )
    assert rows == [
        (1, 50, "2017-03-23 20:49:09.000000+00:00", "Tier 1", 1000, "2017-03-23 19:00:00.000000+00:00",
         '{"employee_id": "employee1", "register_id": "1"}', "1970-01-01 00:00:10.000000+00:00"),
        (2, 5200, "2017-03-23 20:49:04.000000+00:00", "Tier 1", 1000, "2017-03-23 19:00:00.000000+00:00",
         '{"employee_id": "employee1", "register_id": "1"}', "1970-01-01 00:00:11.000000+00:00"),
    ]  # fmt: skip
    # no value is SQL NULL (the loader binds SQLite's NULL as a NaN, which SQLite stores as NULL)
    assert table(
        db,
        "SELECT DISTINCT typeof(facebook_user_id), typeof(tier_current_level_min_value),"
        " typeof(sign_up_channel_id), typeof(extra_fields), typeof(middle_name) FROM members_live",
    ) == [("null", "null", "null", "null", "text")]
    assert table(db, "SELECT COUNT(*) FROM members_live WHERE facebook_user_id IS NULL") == [(2,)]
    # the same files again (a crash between commit and move): the table does not change
    for name in summary.files:
        (src / "loaded" / name).rename(src / name)
    again = loader.load(src)
    assert again.loaded == 3
    assert table(db, "SELECT member_id, total_points FROM members_live ORDER BY 1") == [(1, 50), (2, 5200)]
    db.close()


def test_activities_one_row_per_completion_and_bad_lines_rejected_with_line_and_column(
    tmp_path: Path,
) -> None:
    src = tmp_path / "activity"
    bad_date = sample_activity(3) | {"dateCreated": "last tuesday"}
    write(
        src / "activity-1.jsonl",
        [(1.0, sample_activity(1)), (2.0, sample_activity(1)), (3.0, bad_date), (4.0, sample_activity(2))],
        raw_lines=["{torn", json.dumps({"received_at": 5.0, "push": {"activityId": "x"}})],
    )
    db = sqlite3.connect(":memory:")
    rejects = tmp_path / "rejects.jsonl"
    summary = LiveFeedLoader(db, SQLITE, feed="activity", table="acts").load(src, rejects_path=rejects)
    assert (summary.rows_read, summary.loaded, summary.rejected) == (6, 3, 3)
    assert table(db, "SELECT user_activity_id, points, activity_extra_data FROM acts ORDER BY 1") == [
        ("1", 10, '{"order_id": "order-1"}'),
        ("2", 10, '{"order_id": "order-2"}'),
    ]
    messages = [json.loads(line)["message"] for line in rejects.read_text().splitlines()]
    assert messages[0].startswith(
        "activity-1.jsonl line 3: column date_created (dateCreated): not a timestamp"
    )
    assert messages[1].startswith("activity-1.jsonl line 5: not JSON")
    assert messages[2] == "activity-1.jsonl line 6: column user_activity_id (userActivityId): missing"


def test_unknown_fields_are_kept_and_types_are_never_coerced(tmp_path: Path) -> None:
    src = tmp_path / "profile"
    newer = sample_profile(7) | {"brandNewField": {"a": 1}}
    newer["tierInfo"] = newer["tierInfo"] | {"surpriseKey": 2}
    wrong = sample_profile(8) | {"totalPoints": "lots"}
    write(src / "profile-1.jsonl", [(1.0, newer), (2.0, wrong)])
    db = sqlite3.connect(":memory:")
    summary = LiveFeedLoader(db, SQLITE, feed="profile", table="p").load(
        src, rejects_path=tmp_path / "r.jsonl"
    )
    assert summary.rejected == 1
    assert "column total_points (totalPoints): not a number: 'lots'" in (tmp_path / "r.jsonl").read_text()
    [(extra,)] = table(db, "SELECT extra_fields FROM p")
    assert json.loads(extra) == {"brandNewField": {"a": 1}, "tierInfo": {"surpriseKey": 2}}


@pytest.mark.parametrize("name", ["drop table", "a;b", "1abc", "a.b.c"])
def test_table_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="is not a table name"):
        LiveFeedLoader(sqlite3.connect(":memory:"), SQLITE, feed="profile", table=name)
