"""SIGKILL the purchase sync mid-run, rerun: every receipt once, none doubled, none lost.

The worker is a real child process (``pos_worker.py``) sending 1,500 receipts with 50 ms latency per
request, so that requests are in flight when it is killed. Nothing was written ahead of them: the rerun
sends what its ledger does not hold, and a "not unique" answer tells it which of those had landed.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import time
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.purchases import PurchaseSyncConfig, sync_purchases
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from tests.integration.purchases._helpers import (
    create_members,
    expected_points,
    order_lines,
    pos_client,
    pos_ledger,
    receipts_by_id,
)
from tests.integration.purchases.pos_worker import WORKER_CONFIG
from tests.integration.sigkill import kill_when

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WORKER = pathlib.Path(__file__).with_name("pos_worker.py")
RECEIPTS = 1500
KILL_AFTER = 400


def purchases_seen(sandbox: Any) -> int:
    return int(sandbox.admin.stats()["by_route"].get("POST /purchase", 0))


@pytest.mark.slow
@pytest.mark.parametrize("duplicate_status", [400, 200])
def test_sigkill_mid_run_then_rerun_records_each_receipt_once(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, duplicate_status: int
) -> None:
    emails = create_members(client_for(sandbox), 20)
    lines = order_lines(RECEIPTS, emails, seed=9)
    source = tmp_path / "lines.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ledger = tmp_path / "receipts.sqlite"
    sandbox.configure(pos_duplicate_status=duplicate_status)
    sandbox.set_faults(latency_ms=50)
    command = [sys.executable, str(WORKER), sandbox.base_url, sandbox.pos_url, sandbox.api_key, str(source)]
    assert (
        kill_when([*command, str(ledger)], lambda: purchases_seen(sandbox) >= KILL_AFTER) == -signal.SIGKILL
    )
    _wait_idle(sandbox)  # requests the dead worker left in flight still land (or not) in the sandbox
    sandbox.set_faults(latency_ms=0)
    landed_before = set(receipts_by_id(sandbox))
    assert 0 < len(landed_before) < RECEIPTS  # killed mid-run
    known = _ledger_keys(ledger)
    in_flight = landed_before - known  # landed, but the kill came before the ledger heard of it
    assert known <= landed_before
    duplicates_before = sum(pos_ledger(sandbox)["duplicates"].values())

    with pos_client(sandbox) as client:
        summary = sync_purchases(
            client, iter_chunks(str(source), 500), PurchaseSyncConfig(**WORKER_CONFIG, ledger_path=ledger)
        )
    stored = receipts_by_id(sandbox)
    assert set(stored) == set(expected_points(lines)), "a receipt was lost"
    assert {k: r["points"] for k, r in stored.items()} == expected_points(lines)
    members = {m["email_address"]: m["redeemable_points"] for m in sandbox.admin.members()}
    owed: dict[str, int] = {}
    for line in lines:
        owed[line["email"]] = owed.get(line["email"], 0) + line["price"] * line["quantity"]
    assert members == owed, "a receipt was awarded twice"
    assert summary.is_consistent() and summary.rows_read == RECEIPTS
    assert summary.counts["failed"] == summary.counts["unknown"] == summary.counts["rejected"] == 0
    assert summary.counts["recorded"] + summary.counts["skipped"] == RECEIPTS
    # The ledger's receipts were skipped without a request; every other one was sent once; those that
    # had landed unknown to the ledger were answered as repeats, which proved them.
    assert summary.requests_sent == RECEIPTS - len(known)
    assert sum(pos_ledger(sandbox)["duplicates"].values()) - duplicates_before == len(in_flight)
    proven = len(in_flight) if duplicate_status != 200 else 0  # a replayed 200 reads as recorded
    assert summary.counts["skipped"] == len(known) + proven
    # At most what the sender had submitted and not yet recorded: twice the workers (sync/sender.py).
    assert len(in_flight) <= 2 * WORKER_CONFIG["max_workers"]


def _wait_idle(sandbox: Any) -> None:
    deadline = time.monotonic() + 10
    while sandbox.admin.stats()["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _ledger_keys(path: pathlib.Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return {key for (key,) in db.execute("SELECT key FROM documents WHERE state = 'recorded'")}
