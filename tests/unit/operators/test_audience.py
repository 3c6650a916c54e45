"""CrowdTwistAudienceSyncOperator: argument checks at parse time, and ``execute`` for real.

``execute`` runs against the in-process sandbox over HTTP (connection from ``AIRFLOW_CONN_*``) and,
for the segment file, the SFTP provider's hook against a real OpenSSH server (tests/sftp_server.py);
only the task instance is a stand-in that records XCom pushes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowFailException
from airflow_provider_crowdtwist.operators.audience import CrowdTwistAudienceSyncOperator
from tests.sftp_server import SftpServer, sftp_server

CONN_ID = "crowdtwist_audience_test"
SFTP_CONN_ID = "sftp_audience_test"


class FakeTaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcom[key] = value


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


@pytest.fixture(scope="module")
def sftp() -> Iterator[SftpServer]:
    with sftp_server() as server:
        yield server


def operator(**overrides: Any) -> CrowdTwistAudienceSyncOperator:
    options: dict[str, Any] = {
        "task_id": "audience",
        "crowdtwist_conn_id": CONN_ID,
        "rows": [{"email": "a@example.com"}],
        "id_column": "email",
        "attribute": "recent_buyer",
        "state_path": "/tmp/unused.sqlite",
    }
    options.update(overrides)
    return CrowdTwistAudienceSyncOperator(**options)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attribute": None}, "argument attribute: mode='traits' sets a custom attribute"),
        ({"state_path": None}, "argument state_path: mode='traits' needs state_path"),
        ({"values": (True,)}, "values must be two values"),
        ({"values": (True, None)}, "values must be JSON scalars"),
        ({"values": (1, 1)}, "values must differ"),
        ({"mode": "segments"}, "mode 'segments' is not one of traits, segment_file, both"),
        ({"max_exit_ratio": 1.5}, "max_exit_ratio must be a number between 0 and 1"),
        ({"mode": "both", "segment_name": "x"}, "sftp_conn_id is required"),
        ({"mode": "segment_file", "sftp_conn_id": "s"}, "segment_name must be a non-empty string"),
        (
            {"mode": "segment_file", "sftp_conn_id": "s", "segment_name": "x", "id_type": "facebook_user_id"},
            "id_type 'facebook_user_id' has no column there",
        ),
    ],
)
def test_bad_arguments_fail_at_parse_time(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        operator(**overrides)


def test_a_segment_file_alone_needs_no_attribute_nor_state() -> None:
    op = operator(attribute=None, state_path=None, mode="segment_file", segment_name="vip", sftp_conn_id="s")
    assert op.mode == "segment_file" and "segment_name" in op.template_fields


def test_traits_end_to_end_with_assets_and_summary(conn: Any, tmp_path: Any, client_for: Any) -> None:
    client = client_for(conn)
    for i in range(3):
        client.create_user(
            {
                "email_address": f"op{i}@example.com",
                "first_name": "Op",
                "last_name": "E",
                "postal_code": "02134",
            }
        )
    ti = FakeTaskInstance()
    op = operator(
        rows=[{"email": f"op{i}@example.com"} for i in range(3)],
        state_path=str(tmp_path / "state.sqlite"),
        values=[1, 0],  # a list from a DAG file works as the tuple
    )
    conn.configure(custom_boolean_values="number")
    summary = op.execute({"ti": ti})
    assert summary["counts"]["entered"] == 3
    assert ti.xcom["summary"]["text"].startswith("audience:")
    assert op._asset_uri(conn.base_url).endswith("/audiences/recent_buyer")
    assert {m["custom_data"]["recent_buyer"] for m in conn.admin.members()} == {1}
    # the program's type refuses JSON booleans under this reading: a configuration error, no retry
    with pytest.raises(AirflowFailException, match="CrowdTwist refused custom_data"):
        operator(
            rows=[{"email": "op0@example.com"}],
            state_path=str(tmp_path / "other.sqlite"),
        ).execute({"ti": FakeTaskInstance()})


def test_segment_file_through_the_sftp_providers_connection(
    conn: Any, tmp_path: Any, sftp: SftpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{SFTP_CONN_ID.upper()}", sftp.connection_json())
    directory = sftp.root / "operator"
    directory.mkdir()
    op = operator(
        rows=[{"email": "s1@example.com"}, {"email": "s2@example.com"}],
        attribute=None,
        state_path=None,
        mode="segment_file",
        segment_name="vip_{{ ds_nodash }}",
        sftp_conn_id=SFTP_CONN_ID,
        segment_dir=str(directory),
    )
    op.segment_name = "vip"  # as rendered
    summary = op.execute({"ti": FakeTaskInstance()})
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    assert summary["segment_file"] == f"{directory}/vip_{day}_0001.csv"
    assert (
        directory / f"vip_{day}_0001.csv"
    ).read_bytes() == b"email_address\ns1@example.com\ns2@example.com\n"
    assert summary["counts"]["entered"] == 2 and summary["requests_sent"] == 0


def test_lineage_names_the_sql_tables_and_the_audience(
    conn: Any, tmp_path: Any, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(
        "airflow.providers.openlineage", reason="the openlineage provider is in the test group"
    )
    import sqlite3

    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE buyers (email TEXT)")
        connection.executemany("INSERT INTO buyers VALUES (?)", [("l0@example.com",), ("l1@example.com",)])
    monkeypatch.setenv(
        "AIRFLOW_CONN_AUDIENCE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)})
    )
    client = client_for(conn)
    client.create_user(
        {"email_address": "l0@example.com", "first_name": "L", "last_name": "N", "postal_code": "02134"}
    )
    op = operator(
        rows=None,
        sql="SELECT email FROM buyers",
        sql_conn_id="audience_warehouse",
        state_path=str(tmp_path / "state.sqlite"),
        rejects_path=str(tmp_path / "rejects.jsonl"),
    )
    summary = op.execute({"ti": FakeTaskInstance()})
    assert (summary["counts"]["entered"], summary["counts"]["rejected"]) == (1, 1)  # l1 is unknown
    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    assert source.name == "buyers"
    program, rejected = lineage.outputs
    assert program.name == "audiences/recent_buyer"
    assert program.outputFacets["outputStatistics"].rowCount == 1
    assert rejected.name == str(tmp_path / "rejects.jsonl")
