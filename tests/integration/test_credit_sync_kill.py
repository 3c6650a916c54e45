"""SIGKILL the credit worker mid-run, rerun: nothing twice, nothing lost, nothing left unknown.

The worker is a real child process (``credit_worker.py``) crediting 5,000 rows against the sandbox with
50 ms latency per request, so that a good part of the run is in flight when it is killed. The rerun is
in this process, without latency; it starts by settling the keys the kill left in flight (looked up in
the members' activity histories). The truth is the sandbox's own record of applied credits.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from tests.integration.credit_worker import WORKER_CONFIG, FileRemote
from tests.integration.sigkill import kill_when
from tests.integration.test_credit_sync import applied_per_key, create_members, credit_requests, credit_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WORKER = pathlib.Path(__file__).with_name("credit_worker.py")
ROWS = 5000
KILL_AFTER = 800  # credit requests seen by the sandbox


@pytest.mark.parametrize("remote", [False, True], ids=["local-ledger", "remote-ledger"])
def test_sigkill_mid_run_then_rerun_credits_each_key_at_most_once(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, remote: bool
) -> None:
    client = client_for(sandbox)
    emails = create_members(client)
    rows = credit_rows(ROWS, emails)
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ledger_path = tmp_path / "ledger.sqlite"
    chunksize = 500
    remote_batch = 100
    sandbox.admin.set_faults(latency_ms=50)

    command = [
        sys.executable,
        str(WORKER),
        sandbox.base_url,
        sandbox.api_key,
        str(rows_path),
        str(ledger_path),
    ]
    command += ["--chunksize", str(chunksize), "--run-id", "killed"]
    command += ["--remote", "--remote-batch", str(remote_batch)] if remote else []
    assert kill_when(command, lambda: credit_requests(sandbox) >= KILL_AFTER) == -signal.SIGKILL
    sandbox.admin.set_faults(latency_ms=0)
    applied_before_rerun = applied_per_key(sandbox)
    assert 0 < sum(applied_before_rerun.values()) < ROWS  # killed mid-run

    location: Any = FileRemote(ledger_path) if remote else ledger_path
    config = CreditSyncConfig(**WORKER_CONFIG, run_id="rerun", verify_delay=0.5)
    with CreditLedger.open(location, run_id="rerun") as ledger:
        recovered = ledger.recovered_unknown
        in_flight = {e.dedupe_key for e in ledger.unknown_keys(None)}
        known_before = sum(ledger.counts().values())
        summary = sync_credits(client, iter_chunks(pd.DataFrame(rows), 1000), config, ledger)
        states = {e.dedupe_key: e.state for e in ledger.entries()}

    # The keys in flight at the kill were settled first, by looking them up: landed -> credited,
    # absent -> sent again. Nothing is left unknown, nothing twice, nothing lost.
    assert recovered == len(in_flight) > 0
    assert summary.reconciled == {"credited": recovered}
    assert summary.verified + summary.resent == recovered
    assert summary.verified >= len(in_flight & set(applied_before_rerun))  # landed: found, not resent
    applied = applied_per_key(sandbox)
    keys = {row["order_id"] for row in rows}
    assert set(applied) == keys, "a credit was lost"
    assert max(applied.values()) == 1, "a credit was awarded twice"
    assert summary.is_consistent() and summary.rows_read == ROWS
    assert summary.count("unknown") == 0 and summary.ledger_counts["unknown"] == 0
    assert summary.count("credited") + summary.count("skipped") == ROWS
    assert set(states) == keys and set(states.values()) == {"credited"}
    # The killed run loses at most the credits in flight: one per worker thread with a local ledger
    # (intents per key), at most a batch with a remote one (intents uploaded per batch).
    limit = remote_batch if remote else WORKER_CONFIG["max_workers"]
    assert recovered <= limit
    # Keys the killed run had confirmed, and those settled first, were skipped, not resent.
    assert summary.count("skipped") == known_before
    assert summary.count("credited") == ROWS - known_before
    # A second rerun sends zero requests to CrowdTwist besides the activity list.
    before = sandbox.admin.stats()["total"]
    with CreditLedger.open(location, run_id="rerun-2") as ledger:
        again = sync_credits(client, iter_chunks(pd.DataFrame(rows), 1000), config, ledger)
    assert sandbox.admin.stats()["total"] - before == 1
    assert again.count("skipped") == ROWS and again.history_requests == 0
