"""SIGKILL the credit worker mid-run, rerun, and check the sandbox's ledger: nothing twice, nothing lost.

The worker is a real child process (``credit_worker.py``) crediting 5,000 rows against the sandbox with
50 ms latency per request, so that a good part of the run is in flight when it is killed. The rerun is
in this process, without latency. The truth is read from the sandbox's own record of applied credits.
"""

from __future__ import annotations

import collections
import json
import pathlib
import signal
import sys
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.credit_sync import CreditSyncConfig, CreditSyncSummary, sync_credits
from airflow_provider_crowdtwist.sync.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from airflow_provider_crowdtwist.sync.summary import ThresholdExceededError
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
    config = CreditSyncConfig(**WORKER_CONFIG, run_id="rerun")
    with CreditLedger.open(location, run_id="rerun") as ledger:
        recovered = ledger.recovered_unknown
        with pytest.raises(ThresholdExceededError, match="are 'unknown'") as info:
            sync_credits(client, iter_chunks(pd.DataFrame(rows), 1000), config, ledger)
        summary = info.value.summary
        assert isinstance(summary, CreditSyncSummary)
        states = {e.dedupe_key: e.state for e in ledger.entries()}

    applied = applied_per_key(sandbox)
    # No key credited twice.
    assert max(applied.values()) == 1
    # Every key is credited or reported unknown, and the counts add up.
    assert summary.is_consistent()
    assert summary.rows_read == ROWS
    assert summary.count("credited") + summary.count("skipped") + summary.count("unknown") == ROWS
    assert summary.count("unknown") == recovered > 0
    assert len(states) == ROWS
    assert collections.Counter(states.values()) == {
        "credited": ROWS - recovered,
        "unknown": recovered,
    }
    for row in rows:
        key = row["order_id"]
        if states[key] == "credited":
            assert applied[key] == 1, key
        else:
            assert applied[key] <= 1, key
    unknown_keys = {k for k, s in states.items() if s == "unknown"}
    assert set(summary.unknown_keys) <= unknown_keys
    # The killed run loses at most the credits in flight: one per worker thread with a local ledger
    # (intents per key), at most a batch with a remote one (intents uploaded per batch).
    limit = remote_batch if remote else WORKER_CONFIG["max_workers"]
    assert recovered <= limit
    # Keys the killed run had already confirmed were skipped, not resent.
    assert summary.count("skipped") == sum(applied_before_rerun.values()) - sum(
        applied_before_rerun[k] for k in unknown_keys
    )
    # A second rerun sends zero credit requests.
    before = credit_requests(sandbox)
    with CreditLedger.open(location, run_id="rerun-2") as ledger:
        with pytest.raises(ThresholdExceededError) as info:
            sync_credits(client, iter_chunks(pd.DataFrame(rows), 1000), config, ledger)
        again = info.value.summary
    assert credit_requests(sandbox) == before
    assert again.count("skipped") == ROWS - recovered
    assert again.count("unknown") == recovered
