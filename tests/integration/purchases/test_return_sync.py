"""The return sync against the sandbox: returns deduct, voids credit back, each exactly once.

A day's refunds: returns of items bought earlier (by ``original_receipt_id``), a return without a
receipt (by the member's e-mail), and voids of returns (the ``void`` column). The truth is the members'
balances and the sandbox's POS ledger.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.purchases import (
    PurchaseSyncConfig,
    ReturnSyncConfig,
    sync_purchases,
    sync_returns,
)
from tests.integration.purchases._helpers import create_members, order_lines, pos_client, pos_ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAULTS = {
    "error_rate": 0.05,
    "error_status": 503,
    "applied_then_503_rate": 0.02,
    "applied_then_drop_rate": 0.01,
}


def frame(lines: list[dict[str, Any]]) -> list[pd.DataFrame]:
    return [pd.DataFrame(lines)]


def balances(sandbox: Any) -> dict[str, int]:
    return {m["email_address"]: m["redeemable_points"] for m in sandbox.admin.members()}


def refund_lines(orders: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """One return per receipt for the first ``count`` receipts: one unit of each of its lines."""
    by_receipt: dict[str, list[dict[str, Any]]] = {}
    for line in orders:
        by_receipt.setdefault(line["receipt_id"], []).append(line)
    out = []
    for n, receipt_id in enumerate(sorted(by_receipt)[:count]):
        for line in by_receipt[receipt_id]:
            out.append(
                {
                    "return_id": f"X{n:05d}",
                    "original_receipt_id": receipt_id,
                    "return_type": 1,
                    "date_returned": "2026-12-08 12:00:00",
                    "sku": line["sku"],
                    "price": line["price"],
                    "quantity": 1,
                    "void": False,
                    "email": None,
                }
            )
    return out


def unit_points(orders: list[dict[str, Any]], count: int) -> dict[str, int]:
    """What ``refund_lines`` takes from each member: one unit's points of each line."""
    by_receipt: dict[str, list[dict[str, Any]]] = {}
    for line in orders:
        by_receipt.setdefault(line["receipt_id"], []).append(line)
    out: dict[str, int] = {}
    for receipt_id in sorted(by_receipt)[:count]:
        for line in by_receipt[receipt_id]:
            out[line["email"]] = out.get(line["email"], 0) + line["price"]
    return out


@pytest.mark.parametrize("duplicate_status", [400, 409, 200])
def test_returns_deduct_and_voids_credit_back_once_each_under_faults(
    sandbox: Any, client_for: Any, duplicate_status: int, tmp_path: pathlib.Path
) -> None:
    emails = create_members(client_for(sandbox), 12)
    orders = order_lines(200, emails, seed=5)
    sandbox.configure(pos_duplicate_status=duplicate_status)
    with pos_client(sandbox) as client:
        bought = sync_purchases(
            client,
            frame(orders),
            PurchaseSyncConfig(user_attributes={"email_address": "email"}),
        )
        assert bought.counts["recorded"] == 200
        after_purchases = balances(sandbox)

        refunds = refund_lines(orders, 120)
        sandbox.set_faults(**FAULTS, seed=4)
        config = ReturnSyncConfig(
            original_receipt_id_column="original_receipt_id",
            return_type_column="return_type",
            void_column="void",
            user_attributes={"email_address": "email"},
            ledger_path=tmp_path / "returns.sqlite",
        )
        returned = sync_returns(client, frame(refunds), config)
        assert returned.counts["recorded"] == 120
        assert returned.total_outcomes == returned.rows_read == 120
        taken = unit_points(orders, 120)
        after_returns = balances(sandbox)
        assert {e: after_purchases[e] - after_returns[e] for e in emails if e in taken} == taken

        # The next day: the first 30 returns are voided (a void line names only the return).
        voids = [{**line, "void": True} for line in refunds if int(line["return_id"][1:]) < 30]
        voided = sync_returns(client, frame(voids), config)
        assert voided.counts["voided"] == 30
        again = sync_returns(client, frame(voids), config)  # a rerun: the ledger knows them
        assert again.requests_sent == 0 and again.counts["skipped"] == 30
    sandbox.set_faults(error_rate=0, applied_then_503_rate=0, applied_then_drop_rate=0)
    credited_back = unit_points(orders, 30)
    final = balances(sandbox)
    assert {e: final[e] - after_returns[e] for e in emails if e in credited_back} == credited_back
    ledger = pos_ledger(sandbox)
    assert len(ledger["returns"]) == 90 and len(ledger["voided"]) == 30


def test_a_return_and_its_void_in_one_source_void_after_the_return(sandbox: Any, client_for: Any) -> None:
    emails = create_members(client_for(sandbox), 1)
    orders = order_lines(1, emails, seed=1)
    line = {
        "return_id": "X1",
        "original_receipt_id": orders[0]["receipt_id"],
        "return_type": 1,
        "date_returned": "2026-12-08T12:00:00Z",
        "sku": orders[0]["sku"],
        "price": orders[0]["price"],
        "quantity": 1,
        "void": "no",
    }
    with pos_client(sandbox) as client:
        sync_purchases(client, frame(orders), PurchaseSyncConfig(user_attributes={"email_address": "email"}))
        before = balances(sandbox)
        summary = sync_returns(
            client,
            frame([{**line, "void": "yes"}, line]),  # the void first in the source: still sent after
            ReturnSyncConfig(
                original_receipt_id_column="original_receipt_id",
                return_type_column="return_type",
                void_column="void",
                max_workers=4,
            ),
        )
    assert summary.counts["recorded"] == 1 and summary.counts["voided"] == 1
    assert balances(sandbox) == before


def test_return_rules_checked_before_sending_and_refusals_named(sandbox: Any, tmp_path: pathlib.Path) -> None:
    base = {"email": None, "sku": "S", "price": 1, "quantity": 1, "date_returned": "2026-12-08T12:00:00Z"}
    lines = [
        # no receipt and no member: O:Return requires one of them; type 4 takes no non-member
        {**base, "return_id": "A", "original_receipt_id": None, "return_type": 4},
        # unknown receipt: the sandbox answers not found (OPEN 6: 404 or 400), the column is named
        {**base, "return_id": "B", "original_receipt_id": "nope", "return_type": 1},
        # return type out of range (O:Return: 1-9)
        {**base, "return_id": "C", "original_receipt_id": "nope", "return_type": 12},
    ]
    with pos_client(sandbox) as client:
        for status in (404, 400):
            sandbox.configure(pos_not_found_status=status)
            rejects = tmp_path / f"rejects-{status}.jsonl"
            summary = sync_returns(
                client,
                frame(lines),
                ReturnSyncConfig(
                    original_receipt_id_column="original_receipt_id",
                    return_type_column="return_type",
                    user_attributes={"email_address": "email"},
                    max_failed_ratio=1.0,
                    fail_when_nothing_landed=False,  # every return is refused: the reasons are the point
                    rejects_path=rejects,
                ),
            )
            assert summary.counts["rejected"] == 3
            assert summary.requests_sent == 1  # only B was sent
            messages = {
                json.loads(line)["identifier"]: json.loads(line)["message"]
                for line in rejects.read_text().splitlines()
            }
            assert "return type 4 does not accept non-member returns" in messages["A"]
            assert messages["B"].endswith("(column 'original_receipt_id')")
            assert "not a return type (1 to 9, O:Return) (column 'return_type')" in messages["C"]
    assert pos_ledger(sandbox)["returns"] == []
