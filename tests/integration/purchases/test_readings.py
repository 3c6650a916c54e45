"""The POS syncs under every reading of the POS host's other OPEN points: the same correct end state.

Each reading is switched on the session sandbox at runtime; a small day (receipts, a return, a void, a
rerun) must end with every receipt stored once, no ``failed`` or ``unknown`` outcome, and the rerun
proven by CrowdTwist's answers. What a reading changes (the points, the answer's shape) is CrowdTwist's.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.integration

READINGS = [
    {},
    {"pos_answer": "fulfillment"},
    {"pos_answer": "empty"},
    {"pos_rounding": "down", "pos_rounding_scope": "receipt"},
    {"pos_rounding": "up", "pos_price_is": "line", "pos_points_per_unit": 1.5},
    {"pos_items": "optional"},
    {"pos_second_void": "replay", "pos_voided_return_id": "free"},
    {"pos_negative_balance": "floor", "pos_return_excess": "refuse"},
    {"pos_not_found_status": 400, "pos_duplicate_status": 409},
    {"pos_unknown_user": "store", "pos_refused_auth_status": 403},
    {"pos_inactive_member": "refuse"},
]


@pytest.mark.parametrize(
    "reading", READINGS, ids=[",".join(f"{k}={v}" for k, v in r.items()) or "default" for r in READINGS]
)
def test_a_day_of_orders_and_refunds_under_each_reading(
    sandbox: Any, client_for: Any, reading: dict[str, Any]
) -> None:
    api = client_for(sandbox)
    emails = create_members(api, 5)
    inactive = reading.get("pos_inactive_member") == "refuse"
    if inactive:  # one member deactivated: its receipts are refused, for its status (a row outcome)
        api.update_user(emails[0], {"is_active": 0})
    sandbox.configure(**reading)
    lines = order_lines(40, emails, seed=2)
    first = {}
    for line in lines:
        first.setdefault(line["receipt_id"], line)
    refunds = [
        {
            "return_id": f"X{n}",
            "original_receipt_id": rid,
            "return_type": 1,
            "date_returned": "2026-12-08T09:00:00Z",
            "sku": line["sku"],
            "price": line["price"],
            "quantity": 1,
            "void": n == 0,
        }
        for n, (rid, line) in enumerate(sorted(first.items())[:6])
    ]
    purchases = PurchaseSyncConfig(user_attributes={"email_address": "email"}, max_failed_ratio=1.0)
    returns = ReturnSyncConfig(
        original_receipt_id_column="original_receipt_id",
        return_type_column="return_type",
        void_column="void",
        max_failed_ratio=1.0,
    )
    with pos_client(sandbox) as client:
        bought = sync_purchases(client, [pd.DataFrame(lines)], purchases)
        returned = sync_returns(client, [pd.DataFrame(refunds[1:])], returns)
        voids = [{**refund, "void": True} for refund in refunds[:2]]  # X0 was never returned; X1 was
        voided = sync_returns(client, [pd.DataFrame(voids)], returns)
        again = sync_purchases(client, [pd.DataFrame(lines)], purchases)
    for summary in (bought, returned, voided, again):
        assert summary.counts["failed"] == summary.counts["unknown"] == 0, summary.counts
        assert summary.is_consistent()
    stored = pos_ledger(sandbox)
    refused = 8 if inactive else 0  # receipts n with n % 5 == 0 belong to emails[0]
    assert bought.counts["recorded"] == 40 - refused and bought.counts["rejected"] == refused
    assert len(stored["receipts"]) == 40 - refused
    assert (
        again.counts["recorded" if reading.get("pos_duplicate_status") == 200 else "skipped"] == 40 - refused
    )
    assert sum(stored["duplicates"].values()) >= 40 - refused
    if not inactive:
        assert returned.counts["recorded"] == 5
        assert voided.counts["voided"] == 1 and voided.counts["skipped"] == 1  # X0: nothing to void
