"""The purchase sync against the sandbox's POS host: every receipt exactly once, under faults and readings.

The truth is the sandbox's POS ledger (each receipt stored once by ``receipt_id``, with its points) and
the members' balances (a receipt applied twice would award twice under a reading that did not refuse
repeats -- the balances would show it).
"""

from __future__ import annotations

import pathlib
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.purchases import PurchaseSyncConfig, sync_purchases
from tests.integration.purchases._helpers import (
    create_members,
    expected_points,
    order_lines,
    pos_client,
    pos_ledger,
    receipts_by_id,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAULTS = {
    "error_rate": 0.05,
    "error_status": 503,
    "applied_then_503_rate": 0.02,
    "applied_then_drop_rate": 0.01,
    "seed": 11,
}
DUPLICATE_STATUSES = [400, 409, 200]


def chunks(lines: list[dict[str, Any]], size: int = 500) -> list[pd.DataFrame]:
    frame = pd.DataFrame(lines)
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


def config(**overrides: Any) -> PurchaseSyncConfig:
    return PurchaseSyncConfig(
        **{"user_attributes": {"email_address": "email"}, "max_workers": 16, **overrides}
    )


def balances(sandbox: Any) -> dict[str, int]:
    return {m["email_address"]: m["redeemable_points"] for m in sandbox.admin.members()}


def expected_balances(lines: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line["email"]] = out.get(line["email"], 0) + line["price"] * line["quantity"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("duplicate_status", DUPLICATE_STATUSES)
def test_2000_shuffled_receipts_under_faults_are_each_recorded_once(
    sandbox: Any, client_for: Any, duplicate_status: int
) -> None:
    emails = create_members(client_for(sandbox))
    lines = order_lines(2000, emails)
    sandbox.configure(pos_duplicate_status=duplicate_status)
    sandbox.set_faults(**FAULTS)
    with pos_client(sandbox) as client:
        summary = sync_purchases(client, chunks(lines), config())
    sandbox.set_faults(error_rate=0, applied_then_503_rate=0, applied_then_drop_rate=0)

    assert summary.counts["recorded"] == 2000
    assert summary.total_outcomes == summary.rows_read == 2000
    assert summary.lines_read == len(lines)
    for outcome in ("failed", "unknown", "rejected", "skipped"):
        assert summary.counts[outcome] == 0, outcome
    stored = receipts_by_id(sandbox)
    expected = expected_points(lines)
    assert set(stored) == set(expected)  # none lost
    assert {k: r["points"] for k, r in stored.items()} == expected
    assert balances(sandbox) == expected_balances(lines)  # none doubled
    ledger = pos_ledger(sandbox)
    # the faults did strike: ids were sent again after applied-then-503/drop, and proven by the answer
    assert sum(ledger["duplicates"].values()) > 0
    assert summary.resent + sum(ledger["duplicates"].values()) >= 20


@pytest.mark.parametrize("duplicate_status", DUPLICATE_STATUSES)
def test_rerun_of_the_day_sends_nothing_with_a_ledger_and_only_duplicates_without(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, duplicate_status: int
) -> None:
    emails = create_members(client_for(sandbox), 10)
    lines = order_lines(300, emails, seed=3)
    sandbox.configure(pos_duplicate_status=duplicate_status)
    ledger = tmp_path / "receipts.sqlite"
    with pos_client(sandbox) as client:
        first = sync_purchases(client, chunks(lines, 200), config(ledger_path=ledger))
        assert first.counts["recorded"] == 300
        before = balances(sandbox)

        again = sync_purchases(client, chunks(lines, 200), config(ledger_path=ledger))
        assert again.requests_sent == 0
        assert again.counts["skipped"] == 300

        requests_before = sum(pos_ledger(sandbox)["requests"].values())
        without = sync_purchases(client, chunks(lines, 200), config())
    assert without.requests_sent == 300
    pos = pos_ledger(sandbox)
    assert sum(pos["requests"].values()) - requests_before == 300
    assert sum(pos["duplicates"].values()) == 300  # only duplicates: nothing new was stored
    assert len(pos["receipts"]) == 300
    assert balances(sandbox) == before
    if duplicate_status == 200:  # the replay reading: the first answer again, so "recorded" (again)
        assert without.counts["recorded"] == 300
    else:
        assert without.counts["skipped"] == 300
    assert without.counts["failed"] == without.counts["unknown"] == 0


def test_bad_receipts_are_rejected_naming_row_and_column(sandbox: Any, client_for: Any) -> None:
    emails = create_members(client_for(sandbox), 2)
    good = {
        "email": emails[0],
        "date_purchased": "2026-12-07T10:00:00",
        "total": 10,
        "sku": "A",
        "price": 5,
        "quantity": 2,
    }
    lines = [
        {**good, "receipt_id": "ok"},
        {**good, "receipt_id": "split", "total": 10},
        {**good, "receipt_id": "price", "price": "five"},
        {**good, "receipt_id": "", "sku": "loose"},
        {**good, "receipt_id": "split", "total": 12, "sku": "B"},
        {**good, "receipt_id": "qty", "quantity": "2x"},
        {**good, "receipt_id": "when", "date_purchased": "yesterday"},
    ]
    with pos_client(sandbox) as client:
        summary = sync_purchases(
            client, chunks(lines), config(timezone="America/New_York", max_failed_ratio=1.0)
        )
    assert summary.counts["recorded"] == 1
    assert summary.counts["rejected"] == 5
    stored = receipts_by_id(sandbox)
    assert set(stored) == {"ok"}
    assert stored["ok"]["date_purchased"] == "2026-12-07T10:00:00-05:00"  # read in the zone, sent with offset


def test_rejection_messages(sandbox: Any, client_for: Any, tmp_path: pathlib.Path) -> None:
    import json

    emails = create_members(client_for(sandbox), 2)
    good = {
        "email": emails[0],
        "date_purchased": "2026-12-07T10:00:00Z",
        "total": 10,
        "sku": "A",
        "price": 5,
        "quantity": 2,
        "user_id": None,
    }
    lines = [
        {**good, "receipt_id": "split"},
        {**good, "receipt_id": "price", "price": "five"},
        {**good, "receipt_id": ""},
        {**good, "receipt_id": "split", "total": 12, "sku": "B"},
        {**good, "receipt_id": "nobody", "user_id": 999},
    ]
    rejects = tmp_path / "rejects.jsonl"
    with pos_client(sandbox) as client:
        sync_purchases(
            client,
            chunks(lines),
            config(
                user_id_column="user_id",
                rejects_path=rejects,
                max_failed_ratio=1.0,
                fail_when_nothing_landed=False,  # every receipt is refused: their messages are the point
            ),
        )
    messages = {
        json.loads(line)["identifier"]: json.loads(line)["message"]
        for line in rejects.read_text().splitlines()
    }
    assert messages["split"] == (
        "receipt 'split' (rows 1, 4): its lines disagree on column 'total': a receipt has one value of each "
        "(which one is right cannot be told)"
    )
    assert messages["price"].startswith("receipt 'price' (row 2): row 2: price: 'five' is not a number")
    assert messages["price"].endswith("(column 'price')")
    assert messages[None] == "row 3: empty receipt_id (column 'receipt_id')"
    assert "User with id [999] can not be found." in messages["nobody"]
    assert messages["nobody"].endswith("(column 'user_id')")


def test_unknown_member_is_stored_under_the_store_reading(sandbox: Any) -> None:
    sandbox.configure(pos_unknown_user="store")
    lines = [
        {
            "receipt_id": "r",
            "user_id": 999,
            "date_purchased": "2026-12-07T10:00:00Z",
            "total": 3,
            "sku": "A",
            "price": 3,
            "quantity": 1,
        }
    ]
    with pos_client(sandbox) as client:
        summary = sync_purchases(client, chunks(lines), PurchaseSyncConfig(user_id_column="user_id"))
    assert summary.counts["recorded"] == 1
    assert receipts_by_id(sandbox)["r"]["user_id"] is None
