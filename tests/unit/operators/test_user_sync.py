"""CrowdTwistUserSyncOperator: argument checks at parse time, and ``execute`` with each kind of source.

``execute`` runs for real: connections from ``AIRFLOW_CONN_*`` (CrowdTwist JSON, and a SQLite
warehouse through common.sql's ``get_df_by_chunks``), real HTTP to the in-process sandbox; only the
task instance is a stand-in that records XCom pushes. Runs on Airflow 3 (``.venv``) and 2 (``.venv-af2``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist._compat import AirflowException, AirflowFailException
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CONN_ID = "crowdtwist_member_test"
SQL_CONN_ID = "warehouse_member_test"


class FakeTaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcom[key] = value


def context() -> dict[str, Any]:
    return {"ti": FakeTaskInstance()}


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": {"id_type": "email", "requests_per_minute": 0},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


def members(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "user_id": f"op{i}@example.com",
            "first_name": f"Op{i}",
            "last_name": "Erator",
            "postal_code": "02134",
            "favorite_store": "Boston",
        }
        for i in range(start, start + n)
    ]


def operator(**kwargs: Any) -> CrowdTwistUserSyncOperator:
    kwargs.setdefault("task_id", "sync_members")
    kwargs.setdefault("crowdtwist_conn_id", CONN_ID)
    if not any(k in kwargs for k in ("sql", "rows", "source_path")):
        kwargs["rows"] = members(3)
    return CrowdTwistUserSyncOperator(**kwargs)


# ---- parse-time checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "merge"}, "mode 'merge'"),
        ({"id_type": "customer"}, "id_type 'customer'"),
        ({"unmapped_columns": "drop"}, "unmapped_columns 'drop'"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_failed_ratio": 1.5}, "max_failed_ratio"),
        ({"max_failed_rows": -1}, "max_failed_rows"),
        ({"requests_per_minute": -5}, "requests_per_minute"),
        ({"chunksize": 0}, "chunksize"),
        ({"sql": "SELECT 1", "sql_conn_id": "w", "rows": [{"user_id": "a@b.co"}]}, "exactly one source"),
        ({"rows": None, "sql": "SELECT 1"}, "sql_conn_id is required"),
        ({"rows": None}, "got none"),
        ({"on_removed": "purge", "state_path": "s.sqlite"}, "on_removed 'purge'"),
        ({"on_removed": "deactivate"}, "needs state_path"),
        ({"full_refresh": True}, "needs state_path"),
        ({"null_values": "erase"}, "null_values 'erase'"),
        ({"max_removed_ratio": 2, "state_path": "s.sqlite"}, "max_removed_ratio"),
        ({"remove_points_on_deactivate": True, "state_path": "s.sqlite"}, "on_removed='deactivate'"),
    ],
)
def test_bad_arguments_fail_at_parse_time_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        operator(**kwargs)


def test_lifecycle_arguments_reach_the_engine_and_a_templated_state_path_counts(conn, tmp_path):
    op = operator(
        state_path="{{ params.state }}",
        on_removed="delete",
        max_removed_ratio=0.5,
        allow_empty_source_removal=True,
        full_refresh=True,
        null_values="clear",
    )
    op.state_path = str(tmp_path / "state.sqlite")  # as rendered
    config = op._sync_config()
    assert (config.on_removed, config.max_removed_ratio, config.allow_empty_source_removal) == (
        "delete",
        0.5,
        True,
    )
    assert (config.full_refresh, config.null_values) == (True, "clear")
    result = op.execute(context())
    assert result["counts"]["created"] == 3 and result["rows_removed"] == 0
    op = operator(
        rows=members(1),
        state_path=str(tmp_path / "state.sqlite"),
        on_removed="deactivate",
        max_removed_ratio=1.0,
    )
    result = op.execute(context())
    assert result["counts"]["deactivated"] == 2 and result["rows_removed"] == 2
    assert conn.admin.member("op1@example.com")["is_active"] == 0


def test_templated_field_mapping_is_checked_at_run_time_not_parse_time():
    op = operator(field_mapping={"dob": "{{ params.attr }}"})
    assert op.field_mapping == {"dob": "{{ params.attr }}"}


def test_template_fields_and_ext():
    for name in ("sql", "source_path", "rejects_path", "state_path", "field_mapping", "rows", "parameters"):
        assert name in CrowdTwistUserSyncOperator.template_fields
    assert CrowdTwistUserSyncOperator.template_ext == (".sql",)


# ---- execute ----------------------------------------------------------------------------------------


def test_execute_with_rows_returns_a_small_summary(conn, tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    rows = [*members(3), {"user_id": "broken", "first_name": "X"}]
    result = operator(rows=rows, rejects_path=str(rejects), max_workers=2).execute(context())
    assert result["counts"]["created"] == 3 and result["counts"]["rejected"] == 1
    assert result["rows_read"] == 4 and result["rejects_path"] == str(rejects)
    # PUT 404 + POST for each new member; "broken" is sent too (no documented rule refuses a
    # non-email identifier): its PUT answers 404 and it cannot be created (no last name, no location).
    assert result["requests_sent"] == 7
    assert "broken" in rejects.read_text()
    assert json.loads(json.dumps(result)) == result
    assert "op0@example.com" not in json.dumps(result)  # counts, never rows
    stored = conn.admin.member("op1@example.com")
    assert stored["first_name"] == "Op1" and stored["custom_data"] == {"favorite_store": "Boston"}


def test_execute_with_a_dataframe_and_a_json_string(conn):
    assert operator(rows=pd.DataFrame(members(2))).execute(context())["counts"]["created"] == 2
    text = json.dumps(members(2, start=2))
    assert operator(rows=text).execute(context())["counts"]["created"] == 2
    assert len(conn.admin.members()) == 4


def test_execute_with_sql_through_common_sql_in_chunks(conn, tmp_path, monkeypatch):
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE m (user_id TEXT, first_name TEXT, last_name TEXT, zip TEXT, dob TEXT)"
        )
        connection.executemany(
            "INSERT INTO m VALUES (?, ?, ?, ?, ?)",
            [(f"sql{i}@example.com", f"S{i}", "Q", "02134", "1990-05-17") for i in range(25)],
        )
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db)})
    )
    op = operator(
        sql="SELECT * FROM m WHERE last_name = ?",
        sql_conn_id=SQL_CONN_ID,
        parameters=["Q"],
        chunksize=10,
        field_mapping={"zip": "postal_code", "dob": "date_of_birth"},
    )
    result = op.execute(context())
    assert result["counts"]["created"] == 25
    assert conn.admin.member("sql7@example.com")["date_of_birth"] == 642902400


def test_execute_with_a_csv_file_keeps_leading_zeros(conn, tmp_path):
    path = tmp_path / "members.csv"
    pd.DataFrame(members(4)).assign(postal_code="02134").to_csv(path, index=False)
    result = operator(rows=None, source_path=str(path), unmapped_columns="ignore").execute(context())
    assert result["counts"]["created"] == 4
    stored = conn.admin.member("op2@example.com")
    assert stored["postal_code"] == "02134"
    assert not stored.get("custom_data")  # unmapped_columns="ignore"


def test_dry_run_writes_nothing(conn):
    result = operator(dry_run=True).execute(context())
    assert result["dry_run"] is True and result["counts"]["created"] == 3
    assert conn.admin.members() == []


def test_threshold_failure_pushes_the_summary_and_fails_the_task(conn, tmp_path):
    ctx = context()
    rows = [*members(2), {"user_id": "a"}, {"user_id": "b"}]
    with pytest.raises(AirflowException, match="max_failed_rows=1"):
        operator(rows=rows, max_failed_rows=1, rejects_path=str(tmp_path / "r.jsonl")).execute(ctx)
    summary = ctx["ti"].xcom["summary"]
    assert summary["counts"]["rejected"] == 2 and summary["counts"]["created"] == 2
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 2


def test_bad_key_fails_without_retry_and_without_leaking(sandbox, monkeypatch, caplog):
    wrong = "definitely-wrong-key-123456"
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": wrong}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    ctx = context()
    with pytest.raises(AirflowFailException, match="401") as info:
        operator(rows=members(50), max_workers=2).execute(ctx)
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert wrong not in json.dumps(ctx["ti"].xcom)
    assert sandbox.admin.stats()["total"] < 10


def test_run_time_configuration_errors_fail_without_retry(conn):
    op = operator(field_mapping={"first_name": "{{ params.attr }}"})
    op.field_mapping = {"first_name": "shoe_size"}  # what the template rendered
    with pytest.raises(AirflowFailException, match="shoe_size"):
        op.execute(context())
    # field_mapping is a template field: its content is checked once rendered, never at parse time.
    op = operator(field_mapping={"dob": "birthday"})
    with pytest.raises(AirflowFailException, match="birthday"):
        op.execute(context())
    op = operator(id_column="email")
    with pytest.raises(AirflowFailException, match="id_column 'email'"):
        op.execute(context())
    assert conn.admin.stats()["total"] == 0


def test_missing_source_file_fails_clearly(conn, tmp_path):
    with pytest.raises(AirflowFailException, match="does not exist"):
        operator(rows=None, source_path=str(tmp_path / "nope.csv")).execute(context())


def test_requests_per_minute_and_pool_follow_the_task(conn, monkeypatch):
    from airflow_provider_crowdtwist.hooks import crowdtwist as _common  # the hook builds the client

    seen = {}
    original = _common.CrowdTwistClient

    def spy(config, **kwargs):
        seen["config"] = config
        client = original(config, **kwargs)
        seen["limiter"] = client.rate_limiter  # the client builds its own from the config
        return client

    monkeypatch.setattr(_common, "CrowdTwistClient", spy)
    operator(requests_per_minute=1200, max_workers=100).execute(context())
    assert seen["config"].requests_per_minute == 1200
    assert seen["config"].pool_size >= 100
    assert seen["limiter"] is not None and seen["limiter"].requests_per_minute == 1200


def test_object_storage_paths_for_source_and_rejects(conn, tmp_path):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    source = ObjectStoragePath(f"file://{tmp_path}/in/members.jsonl")
    source.parent.mkdir(parents=True, exist_ok=True)
    with source.open("wb") as f:
        for row in [*members(3), {"user_id": "bad", "password": "ObjSt0re-Secret"}]:
            f.write((json.dumps(row) + "\n").encode())
    rejects = ObjectStoragePath(f"file://{tmp_path}/out/rejects.jsonl")
    result = operator(rows=None, source_path=source, rejects_path=rejects).execute(context())
    assert result["counts"] == {**result["counts"], "created": 3, "rejected": 1}
    assert result["rejects_path"] == str(rejects)
    text = (tmp_path / "out" / "rejects.jsonl").read_text()
    assert '"row_number": 4' in text and "ObjSt0re-Secret" not in text


# ---- source argument helpers (operators/_source.py) -------------------------------------------------


def test_parse_rows_accepts_json_and_rendered_python_literals():
    from airflow_provider_crowdtwist.operators._source import parse_rows

    assert parse_rows('[{"user_id": "a@b.co"}]') == [{"user_id": "a@b.co"}]
    assert parse_rows("[{'user_id': 'a@b.co', 'vip': True, 'n': None}]") == [
        {"user_id": "a@b.co", "vip": True, "n": None}
    ]
    assert parse_rows("") == []
    assert parse_rows(x for x in [{"a": 1}]) == [{"a": 1}]
    with pytest.raises(ValueError, match="JSON or a Python literal"):
        parse_rows("__import__('os').system('echo no')")
    with pytest.raises(ValueError, match="expected a DataFrame"):
        parse_rows(42)


def test_resolve_path_keeps_local_paths_and_sends_urls_to_object_storage(tmp_path):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_crowdtwist.operators._source import resolve_path

    assert resolve_path("/data/m.csv") == "/data/m.csv"
    url = resolve_path("file:///data/m.csv")
    assert isinstance(url, ObjectStoragePath) and str(url) == "file:///data/m.csv"
    assert resolve_path(None) is None
    marker = object()
    assert resolve_path(marker) is marker


def test_object_storage_urls_are_not_touched_at_parse_time():
    op = operator(rejects_path="s3://bucket/rejects/{{ ds }}.jsonl", state_path="gs://b/state.sqlite")
    assert op.rejects_path == "s3://bucket/rejects/{{ ds }}.jsonl"


def test_operator_can_be_deep_copied_and_killed_before_running():
    import copy

    op = operator()
    op.on_kill()  # nothing running: no error
    clone = copy.deepcopy(op)
    assert clone.rows == op.rows


# ---- partitions (docs/scale-out.md) ------------------------------------------------------------------


def test_a_partition_paces_at_its_share_of_the_cap_and_syncs_only_its_members(conn, monkeypatch, tmp_path):
    from airflow_provider_crowdtwist.hooks import crowdtwist as _common  # the hook builds the client
    from airflow_provider_crowdtwist.sync.partition import Partition, member_key

    seen = {}
    original = _common.CrowdTwistClient

    def spy(config, **kwargs):
        seen["config"] = config
        return original(config, **kwargs)

    monkeypatch.setattr(_common, "CrowdTwistClient", spy)
    rows = members(40)
    mine = [r["user_id"] for r in rows if Partition(1, 4).owns(member_key(r["user_id"], lower=True))]
    result = operator(
        rows=rows, requests_per_minute=1200, partition=[1, 4], state_path=str(tmp_path / "state.sqlite")
    ).execute(context())
    assert seen["config"].requests_per_minute == 300  # 1,200 / 4
    assert result["partition"] == [1, 4]
    assert result["rows_read"] == len(mine) and result["counts"]["created"] == len(mine)
    assert sorted(m["email_address"] for m in conn.admin.members()) == sorted(mine)
    assert (tmp_path / "state.part-1-of-4.sqlite").is_file()
    assert result["rate_limit"]["configured_requests_per_minute"] == 300


@pytest.mark.parametrize(("partition", "message"), [((4, 4), "index"), ((0, 0), "count"), ("1/4", "index")])
def test_a_bad_partition_fails_at_parse_time(partition, message):
    with pytest.raises(ValueError, match=message):
        operator(partition=partition)
