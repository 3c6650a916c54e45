"""CrowdTwistPurchaseOperator and CrowdTwistReturnOperator: argument checks, and ``execute`` against the
sandbox (connection from ``AIRFLOW_CONN_*`` JSON with ``pos_host``, real HTTP, a real ledger file)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowFailException
from airflow_provider_crowdtwist.operators.purchase import CrowdTwistPurchaseOperator
from airflow_provider_crowdtwist.operators.returns import CrowdTwistReturnOperator

CONN_ID = "crowdtwist_pos_test"


class FakeTaskInstance:
    def __init__(self) -> None:
        self.dag_id, self.task_id, self.run_id, self.try_number = "shop", "send", "manual__1", 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)
        self.xcom[key] = value


def connection(sandbox: Any, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))


LINES = [
    {
        "receipt_id": "R1",
        "email": "shop@example.com",
        "when": "2026-12-07 10:00",
        "total": 7,
        "sku": "A",
        "price": 3,
        "quantity": 1,
    },
    {
        "receipt_id": "R2",
        "email": "shop@example.com",
        "when": "2026-12-07 11:00",
        "total": 4,
        "sku": "B",
        "price": 4,
        "quantity": 1,
    },
    {
        "receipt_id": "R1",
        "email": "shop@example.com",
        "when": "2026-12-07 10:00",
        "total": 7,
        "sku": "C",
        "price": 4,
        "quantity": 1,
    },
]


def purchase_operator(**overrides: Any) -> CrowdTwistPurchaseOperator:
    arguments: dict[str, Any] = {
        "task_id": "send_orders",
        "crowdtwist_conn_id": CONN_ID,
        "rows": LINES,
        "user_attributes": {"email_address": "email"},
        "date_purchased_column": "when",
        "timezone": "America/Chicago",
        **overrides,
    }
    return CrowdTwistPurchaseOperator(**arguments)


def test_arguments_checked_at_parse_time() -> None:
    with pytest.raises(ValueError, match="user_attributes"):
        purchase_operator(user_attributes={"email": "email"})
    with pytest.raises(ValueError, match="item_mapping"):
        purchase_operator(item_mapping={"price": "p"})
    with pytest.raises(ValueError, match="max_resends"):
        purchase_operator(max_resends=-1)
    assert "ledger_path" in CrowdTwistPurchaseOperator.template_fields
    assert "timezone" in CrowdTwistReturnOperator.template_fields


def test_purchases_then_rerun_with_ledger(
    sandbox: Any, client_for: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    connection(sandbox, monkeypatch, pos_host=sandbox.pos_url)
    client_for(sandbox).create_user(
        {"first_name": "S", "last_name": "Hop", "email_address": "shop@example.com", "postal_code": "02134"}
    )
    ti = FakeTaskInstance()
    summary = purchase_operator(ledger_path=str(tmp_path / "receipts.sqlite")).execute({"ti": ti})
    assert summary["counts"]["recorded"] == 2 and summary["rows_read"] == 2 and summary["lines_read"] == 3
    assert ti.xcom["summary"]["counts"]["recorded"] == 2
    receipts = {r["receipt_id"]: r for r in sandbox.admin.pos()["receipts"]}
    assert receipts["R1"]["date_purchased"] == "2026-12-07T10:00:00-06:00" and receipts["R1"]["points"] == 7
    again = purchase_operator(ledger_path=str(tmp_path / "receipts.sqlite")).execute(
        {"ti": FakeTaskInstance()}
    )
    assert again["requests_sent"] == 0 and again["counts"]["skipped"] == 2

    returns = CrowdTwistReturnOperator(
        task_id="send_refunds",
        crowdtwist_conn_id=CONN_ID,
        rows=[
            {
                "return_id": "X1",
                "receipt": "R1",
                "sku": "C",
                "price": 4,
                "quantity": 1,
                "returned": "2026-12-08T09:00:00Z",
                "void": False,
            }
        ],
        original_receipt_id_column="receipt",
        date_returned_column="returned",
        void_column="void",
    ).execute({"ti": FakeTaskInstance()})
    assert returns["counts"]["recorded"] == 1
    assert sandbox.admin.member("shop@example.com")["redeemable_points"] == 7


def test_hmac_connection_fails_before_any_request(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "login": sandbox.hmac_public_key,
        "password": sandbox.hmac_private_key,
        "extra": {"auth_type": "hmac", "pos_host": sandbox.pos_url},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    before = sandbox.admin.stats()["total"]
    with pytest.raises(AirflowFailException, match="does not support HMAC"):
        purchase_operator().execute({"ti": FakeTaskInstance()})
    assert sandbox.admin.stats()["total"] == before


def test_missing_pos_host_fails_naming_the_extra(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection(sandbox, monkeypatch)
    with pytest.raises(AirflowFailException, match="pos_host"):
        purchase_operator().execute({"ti": FakeTaskInstance()})
