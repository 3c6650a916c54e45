"""CrowdTwistActivityCreditOperator: argument checks, and ``execute`` against the sandbox.

``execute`` runs for real (connection from ``AIRFLOW_CONN_*`` JSON, real HTTP to the in-process
sandbox, a real ledger file); only the task instance is a small stand-in that records XCom pushes.
Runs on Airflow 3 (``.venv``) and Airflow 2 (``.venv-af2``).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowException, AirflowFailException
from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger

CONN_ID = "crowdtwist_credit_test"


class FakeTaskInstance:
    """Records what the operator pushes to XCom (the only task-instance feature it uses)."""

    def __init__(self) -> None:
        self.dag_id = "loyalty"
        self.task_id = "credit_events"
        self.run_id = "manual__2026-11-23"
        self.try_number = 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XComs must be JSON-serialisable
        self.xcom[key] = value


def context() -> dict[str, Any]:
    ti = FakeTaskInstance()
    return {"ti": ti, "run_id": ti.run_id}


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": {"api_key_in": "query", "id_type": "email"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


@pytest.fixture
def members(conn: Any, client_for: Any) -> list[str]:
    client = client_for(conn)
    emails = [f"op{i}@example.com" for i in range(5)]
    for email in emails:
        client.create_user(
            {"first_name": "Op", "last_name": "Erator", "email_address": email, "postal_code": "02134"}
        )
    return emails


def rows_for(emails: list[str], n: int = 20) -> list[dict[str, Any]]:
    return [
        {
            "email": emails[i % len(emails)],
            "event_id": f"evt-{i}",
            "points": i,
            "at": "2026-11-01",
            "store": i % 3,
        }
        for i in range(n)
    ]


def operator(**overrides: Any) -> CrowdTwistActivityCreditOperator:
    args: dict[str, Any] = {
        "task_id": "credit_events",
        "crowdtwist_conn_id": CONN_ID,
        "id_column": "email",
        "activity_id": "purchase",
        "points_column": "points",
        "activity_date_column": "at",
        "extra_data_columns": {"event_id": "order_id", "store": "store"},
        "dedupe_key_column": "event_id",
        "max_workers": 4,
    }
    args.update(overrides)
    return CrowdTwistActivityCreditOperator(**args)


def credit_requests(sandbox: Any) -> int:
    by_route = sandbox.admin.stats()["by_route"]
    return sum(v for k, v in by_route.items() if "activities" in k and k.startswith("POST"))


# ---------------------------------------------------------------------- arguments


def test_refuses_to_credit_without_a_ledger() -> None:
    with pytest.raises(ValueError, match="ledger_path is required"):
        operator(rows=[{"email": "a@b.c"}])
    op = operator(rows=[{"email": "a@b.c"}], allow_duplicates=True)
    assert op.allow_duplicates is True
    with pytest.raises(ValueError, match="contradict"):
        operator(rows=[], ledger_path="/tmp/l.sqlite", allow_duplicates=True)


def test_a_blank_ledger_path_counts_as_none(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="ledger_path is required"):
        operator(rows=[], ledger_path="")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"activity_id": None}, "exactly one of activity_id"),
        ({"activity_id_column": "act"}, "exactly one of activity_id"),
        ({"extra_data_columns": 3}, "extra_data_columns"),
        ({"id_type": "phone"}, "id_type 'phone'"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_failed_ratio": 2}, "max_failed_ratio"),
        ({"rows": None}, "exactly one source"),
        ({"requests_per_minute": -1}, "requests_per_minute"),
        ({"verify_delay": -1}, "verify_delay"),
        ({"verify_delay": "soon"}, "verify_delay"),
        ({"verify_resends": 1.5}, "verify_resends"),
        ({"dedupe_extra_key": ""}, "dedupe_extra_key"),
        ({"extra_data_columns": {"event_id": "ct_dedupe_key"}}, "reserved for each credit's dedupe key"),
    ],
)
def test_bad_arguments_fail_at_parse_time(
    overrides: dict[str, Any], fragment: str, tmp_path: pathlib.Path
) -> None:
    args = {"rows": [], "ledger_path": str(tmp_path / "l.sqlite"), **overrides}
    with pytest.raises(ValueError, match=fragment):
        operator(**args)


def test_templated_activity_id_is_checked_at_run_time(tmp_path: pathlib.Path) -> None:
    op = operator(rows=[], ledger_path=str(tmp_path / "l.sqlite"), activity_id="{{ params.activity }}")
    assert "activity_id" in op.template_fields
    assert "ledger_path" in op.template_fields


# ---------------------------------------------------------------------- execute against the sandbox


def test_execute_credits_then_rerun_skips_everything(
    conn: Any, members: list[str], tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger = tmp_path / "ledger.sqlite"
    rejects = tmp_path / "rejects.jsonl"
    rows = [
        *rows_for(members),
        {"email": members[0], "event_id": "bad", "points": "ten", "at": None, "store": 1},
    ]
    op = operator(rows=rows, ledger_path=str(ledger), rejects_path=str(rejects))
    ctx = context()
    result = op.execute(ctx)
    json.dumps(result)
    assert result["counts"]["credited"] == 20
    assert result["counts"]["rejected"] == 1
    assert result["unknown"] == 0
    assert result["rows_read"] == 21
    assert result["ledger_path"] == str(ledger)
    assert result["ledger_counts"]["credited"] == 20
    assert result["rejects_path"] == str(rejects)
    credits = conn.admin.credits()
    assert len(credits) == 20
    assert {c["extra_data"]["order_id"] for c in credits} == {f"evt-{i}" for i in range(20)}
    with CreditLedger.open(ledger) as opened:
        entry = opened.get("evt-3")
    assert entry is not None and entry.state == "credited"
    assert entry.run_id == "loyalty/credit_events/manual__2026-11-23/try1"

    before = credit_requests(conn)
    again = operator(rows=rows, ledger_path=str(ledger), rejects_path=str(rejects)).execute(context())
    assert credit_requests(conn) == before
    assert again["counts"]["skipped"] == 20
    # The API key never reaches the log, the XCom, the rejects file or the ledger.
    for text in (caplog.text, json.dumps(result), rejects.read_text(), ledger.read_bytes().decode("latin-1")):
        assert conn.api_key not in text


def test_an_earlier_unknown_credit_is_verified_and_sent_once(
    conn: Any, members: list[str], tmp_path: pathlib.Path
) -> None:
    """Left unknown by an earlier run (e.g. a timeout): looked up in the history, absent, sent once."""
    ledger_path = tmp_path / "ledger.sqlite"
    with CreditLedger.open(ledger_path, run_id="earlier") as ledger:
        ledger.mark_pending([CreditIntent("evt-4", members[4], "purchase", 4)])
        ledger.record("evt-4", "unknown", "read timeout")
    result = operator(rows=rows_for(members, 10), ledger_path=str(ledger_path), verify_delay=0.1).execute(
        context()
    )
    assert result["counts"]["credited"] == 10 and result["unknown"] == 0
    assert result["resent"] == 1 and result["request_counts"].get("history", 0) >= 1
    assert [c["extra_data"]["order_id"] for c in conn.admin.credits()].count("evt-4") == 1


def test_unverifiable_unknown_credits_fail_the_task_with_summary_pushed(
    conn: Any, members: list[str], tmp_path: pathlib.Path
) -> None:
    """With the key turned off nothing can be verified: the unknown key fails the task, as before."""
    ledger_path = tmp_path / "ledger.sqlite"
    with CreditLedger.open(ledger_path, run_id="earlier") as ledger:
        ledger.mark_pending([CreditIntent("evt-4", members[4], "purchase", 4)])
        ledger.record("evt-4", "unknown", "read timeout")
    rows = rows_for(members, 10)
    off = {"dedupe_extra_key": None, "verify_delay": 0.1}
    ctx = context()
    with pytest.raises(AirflowException, match=r"1 credit\(s\) are 'unknown'") as info:
        operator(rows=rows, ledger_path=str(ledger_path), **off).execute(ctx)
    assert not isinstance(info.value, AirflowFailException)  # an ordinary failure: a retry may settle it
    pushed = ctx["ti"].xcom["summary"]
    assert pushed["unknown"] == 1
    assert pushed["unknown_keys"] == ["evt-4"]
    assert pushed["counts"]["credited"] == 9
    assert pushed["request_counts"].get("history", 0) == 0
    assert "evt-4" not in {c["extra_data"]["order_id"] for c in conn.admin.credits()}
    # Tolerated on request; still not resent.
    result = operator(rows=rows, ledger_path=str(ledger_path), fail_on_unknown=False, **off).execute(
        context()
    )
    assert result["unknown"] == 1
    assert result["counts"]["skipped"] == 9
    # resend_unknown: sent again without proof, once.
    result = operator(rows=rows, ledger_path=str(ledger_path), resend_unknown=True, **off).execute(context())
    assert result["counts"]["credited"] == 1
    assert len(conn.admin.credits()) == 10


def test_threshold_and_config_failures(conn: Any, members: list[str], tmp_path: pathlib.Path) -> None:
    rows = [{"email": None, "event_id": f"x{i}", "points": 1, "at": None, "store": 1} for i in range(3)]
    ctx = context()
    with pytest.raises(AirflowException, match="max_failed_rows=2") as info:
        operator(rows=rows, ledger_path=str(tmp_path / "l.sqlite"), max_failed_rows=2).execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert ctx["ti"].xcom["summary"]["counts"]["rejected"] == 3
    # A fixed activity the program does not have: no retry can fix it, and nothing is credited.
    with pytest.raises(AirflowFailException, match="'purchse' is not an active activity"):
        operator(
            rows=rows_for(members), ledger_path=str(tmp_path / "l.sqlite"), activity_id="purchse"
        ).execute(context())
    # A missing column is named before the first credit.
    with pytest.raises(AirflowFailException, match="no column"):
        operator(rows=[{"email": members[0]}], ledger_path=str(tmp_path / "l.sqlite")).execute(context())
    assert credit_requests(conn) == 0


def test_object_storage_ledger(conn: Any, members: list[str], tmp_path: pathlib.Path) -> None:
    """An ``ObjectStoragePath`` ledger (``file://`` here) is downloaded, used and uploaded."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_crowdtwist.sync.paths import is_local

    remote = ObjectStoragePath(f"file://{tmp_path}/bucket/ledger.sqlite")
    assert not is_local(remote)  # really the object-storage code path
    (tmp_path / "bucket").mkdir()
    rows = rows_for(members, 12)
    result = operator(rows=rows, ledger_path=remote, chunksize=5).execute(context())
    assert result["counts"]["credited"] == 12
    assert (tmp_path / "bucket" / "ledger.sqlite").exists()
    before = credit_requests(conn)
    again = operator(rows=rows, ledger_path=remote).execute(context())
    assert again["counts"]["skipped"] == 12
    assert credit_requests(conn) == before


def test_allow_duplicates_runs_without_ledger(conn: Any, members: list[str]) -> None:
    result = operator(rows=rows_for(members, 6), allow_duplicates=True).execute(context())
    assert result["counts"]["credited"] == 6
    assert result["ledger_path"] is None


def test_ledger_in_use_by_another_run_is_a_retryable_failure(
    conn: Any, members: list[str], tmp_path: pathlib.Path
) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    with CreditLedger.open(ledger_path, run_id="other-run"):
        with pytest.raises(AirflowException, match="in use by another running sync") as info:
            operator(rows=rows_for(members), ledger_path=str(ledger_path)).execute(context())
        assert not isinstance(info.value, AirflowFailException)
    assert credit_requests(conn) == 0


# ---- partitions (docs/scale-out.md) ------------------------------------------------------------------


def test_partitions_keep_their_own_ledgers_and_another_layout_is_refused(conn, members, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    rows = rows_for(members, n=5)  # one credit per member: no duplicate window in play
    results = [
        operator(rows=rows, ledger_path=str(ledger), partition=[i, 2]).execute(context()) for i in range(2)
    ]
    assert sum(r["counts"]["credited"] for r in results) == 5
    assert sum(r["rows_read"] for r in results) == 5
    assert all((tmp_path / f"ledger.part-{i}-of-2.sqlite").is_file() for i in range(2))
    assert not ledger.exists()
    sent = credit_requests(conn)
    # the same ledger, partitioned 3 ways: refused before the first request, without retry
    with pytest.raises(AirflowFailException, match="another partition layout"):
        operator(rows=rows, ledger_path=str(ledger), partition=[0, 3]).execute(context())
    with pytest.raises(AirflowFailException, match="unpartitioned"):
        operator(rows=rows, ledger_path=str(ledger)).execute(context())
    assert credit_requests(conn) == sent
    assert len(conn.admin.credits()) == 5
