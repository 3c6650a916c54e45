"""Verified credits against the sandbox: every credit is proven in the member's activity history.

The sandbox runs each reading of the OPEN point "does CrowdTwist deduplicate?": no duplicate detection
at all, or the window on. Awards land after a lag (as Oracle says: queued, "generally within seconds"),
and faults make answers ambiguous: 503 before or after the award, connections dropped before or after
it. The truth is the sandbox's own record of applied awards (``admin.credits()``), read after every
queued award has landed; never what the engine says it did.
"""

from __future__ import annotations

import collections
import json
import logging
import pathlib
import time
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from tests.integration.test_credit_sync import (
    applied_per_key,
    config,
    create_members,
    credit_requests,
    credit_rows,
    run_sync,
)

pytestmark = pytest.mark.integration

AWARD_LAG = 2.0
VERIFY_DELAY = 2.5  # must outlast the award lag: a credit not visible yet would be taken as absent
FAULTS = {
    "error_rate": 0.05,  # 503 before anything is applied
    "error_status": 503,
    "applied_then_503_rate": 0.02,
    "applied_then_drop_rate": 0.01,
    "drop_rate": 0.01,  # dropped before anything is applied
}
NO_FAULTS = dict.fromkeys(("error_rate", "applied_then_503_rate", "applied_then_drop_rate", "drop_rate"), 0.0)
WINDOWS = {"no-dedupe": 0.0, "window-on": 10.0}


def ledger_states(path: pathlib.Path) -> dict[str, str]:
    with CreditLedger.open(path) as ledger:
        return {e.dedupe_key: e.state for e in ledger.entries()}


def settled_awards(sandbox: Any) -> collections.Counter[str]:
    """Awards per dedupe key once every queued award has been applied."""
    sandbox.admin.wait_settled(timeout=30)
    return applied_per_key(sandbox)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
def test_5000_credits_with_faults_and_award_lag_each_key_awarded_exactly_once(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, window: float
) -> None:
    client = client_for(sandbox)
    emails = create_members(client)
    sandbox.admin.configure(dedupe_window_s=window, award_lag_s=AWARD_LAG)
    sandbox.admin.set_faults(**FAULTS, seed=20261201)
    rows = credit_rows(5000, emails)
    ledger_path = tmp_path / "ledger.sqlite"
    cfg = config(verify_delay=VERIFY_DELAY)
    summary = run_sync(client, rows, cfg, ledger_path, chunksize=1000)
    assert summary.is_consistent() and summary.rows_read == 5000
    if summary.count("unknown"):  # allowed once: the settle delay outlasted the run; one rerun settles them
        sandbox.admin.set_faults(**NO_FAULTS)
        rerun = run_sync(client, rows, config(run_id="rerun", verify_delay=VERIFY_DELAY), ledger_path)
        assert rerun.count("unknown") == 0 and not rerun.reconciled.get("unknown")
    sandbox.admin.set_faults(**NO_FAULTS)
    states = ledger_states(ledger_path)
    awards = settled_awards(sandbox)
    keys = {r["order_id"] for r in rows}
    assert set(states) == keys
    assert collections.Counter(states.values()) == {"credited": 5000}, "0 unknown, 0 failed"
    assert set(awards) == keys, "a credit was lost"
    assert max(awards.values()) == 1, "a dedupe key was awarded twice"
    # 0 counted credited that the sandbox did not award: every credited key is in the sandbox, once.
    assert all(awards[k] == 1 for k, s in states.items() if s == "credited")
    # The faults happened, and they were settled by looking, not by believing.
    assert summary.verified > 0 and summary.resent > 0
    assert summary.history_requests > 0
    assert summary.requests_sent > 5000 + summary.history_requests
    # A rerun sends nothing.
    before = credit_requests(sandbox)
    again = run_sync(client, rows, config(run_id="rerun-2", verify_delay=VERIFY_DELAY), ledger_path)
    assert credit_requests(sandbox) == before
    assert again.count("skipped") == 5000 and again.history_requests == 0


@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
def test_two_distinct_credits_of_identical_content_one_second_apart_are_both_awarded(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, window: float
) -> None:
    """Same member, activity and points, no date, no extra data of the user's: only the dedupe key
    (which travels in extra_data) tells them apart, so the duplicate window cannot swallow the second."""
    client = client_for(sandbox)
    (email,) = create_members(client, 1)
    sandbox.admin.configure(dedupe_window_s=window)
    same = {"email": email, "activity": "purchase", "points": 10}
    cfg = {"activity_date_column": None, "extra_data_columns": None, "verify_delay": 0.5}
    ledger_path = tmp_path / "ledger.sqlite"
    first = run_sync(client, [{**same, "order_id": "A-1"}], config(run_id="r1", **cfg), ledger_path)
    time.sleep(1.0)
    second = run_sync(client, [{**same, "order_id": "A-2"}], config(run_id="r2", **cfg), ledger_path)
    assert first.count("credited") == second.count("credited") == 1
    awards = sandbox.admin.credits()
    assert sorted(a["extra_data"]["ct_dedupe_key"] for a in awards) == ["A-1", "A-2"]
    assert [a["points"] for a in awards] == [10, 10]
    assert ledger_states(ledger_path) == {"A-1": "credited", "A-2": "credited"}


def test_without_the_key_an_identical_credit_is_unknown_not_believed(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Turned off explicitly, the key no longer tells identical bodies apart: the second credit meets
    'Event already processed', which belongs to the *first* one -- so it is not counted credited."""
    client = client_for(sandbox)
    (email,) = create_members(client, 1)
    same = {"email": email, "activity": "purchase", "points": 10}
    cfg = {
        "activity_date_column": None,
        "extra_data_columns": None,
        "dedupe_extra_key": None,
        "verify_delay": 0.2,
    }
    ledger_path = tmp_path / "ledger.sqlite"
    first = run_sync(client, [{**same, "order_id": "B-1"}], config(run_id="r1", **cfg), ledger_path)
    second = run_sync(client, [{**same, "order_id": "B-2"}], config(run_id="r2", **cfg), ledger_path)
    assert first.count("credited") == 1
    assert second.count("unknown") == 1 and second.count("credited") == 0
    assert second.already_processed == 1 and second.history_requests == 0  # nothing to look for
    assert len(sandbox.admin.credits()) == 1
    assert ledger_states(ledger_path) == {"B-1": "credited", "B-2": "unknown"}
    assert "rests on CrowdTwist's duplicate window" in caplog.text  # turning the key off is announced


def test_applied_then_503_is_verified_without_a_resend(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    emails = create_members(client, 20)
    sandbox.admin.configure(dedupe_window_s=0.0, award_lag_s=0.5)
    sandbox.admin.set_faults(applied_then_503_rate=1.0, fault_routes=["credit"])
    rows = credit_rows(20, emails)
    summary = run_sync(client, rows, config(verify_delay=1.0), tmp_path / "l.sqlite")
    assert summary.count("credited") == 20 and summary.verified == 20 and summary.resent == 0
    assert credit_requests(sandbox) == 20  # each sent exactly once
    assert set(settled_awards(sandbox).values()) == {1}


def test_unreadable_history_leaves_unknown_and_the_next_run_reconciles_first(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(sandbox, max_retries=1, api_key_in="query")  # the key travels in every URL
    emails = create_members(client, 10)
    sandbox.admin.configure(dedupe_window_s=0.0)
    rows = credit_rows(10, emails)
    ledger_path = tmp_path / "l.sqlite"
    # Half the credits land before their 503, half do not; the history cannot be read at all.
    sandbox.admin.set_faults(applied_then_503_rate=1.0, fault_routes=["credit", "history"])
    first = run_sync(client, rows[:5], config(verify_delay=0.2), ledger_path)
    sandbox.admin.set_faults(applied_then_503_rate=0.0, error_rate=1.0, error_status=503)
    also = run_sync(client, rows[5:], config(run_id="also", verify_delay=0.2), ledger_path)
    assert first.count("unknown") == also.count("unknown") == 5
    assert also.reconciled == {"unknown": 5}  # tried first, in vain: the history is still down
    with CreditLedger.open(ledger_path) as ledger:
        assert len(ledger.unknown_keys()) == 10
        assert all("could not be read" in (e.message or "") for e in ledger.unknown_keys())
    landed = set(applied_per_key(sandbox))
    assert landed == {r["order_id"] for r in rows[:5]}
    sandbox.admin.set_faults(**NO_FAULTS)
    # The next run has no rows of its own: it settles the earlier run's keys before anything else.
    before = credit_requests(sandbox)
    second = run_sync(client, [], config(run_id="next", verify_delay=0.2), ledger_path)
    assert second.rows_read == 0
    assert second.reconciled == {"credited": 10}
    assert credit_requests(sandbox) - before == 10 - len(landed)  # only the absent ones were resent
    assert second.resent == 10 - len(landed) and second.verified == len(landed)
    assert ledger_states(ledger_path) == dict.fromkeys((r["order_id"] for r in rows), "credited")
    assert set(applied_per_key(sandbox).values()) == {1} and len(applied_per_key(sandbox)) == 10
    # The failed look-ups' messages went to the log and the ledger; the API key did not.
    for text in (caplog.text, ledger_path.read_bytes().decode("latin-1"), json.dumps(first.to_dict())):
        assert sandbox.api_key not in text


@pytest.mark.parametrize("envelope", ["list", "paged"])
def test_verification_reads_both_history_envelopes_and_pages_back(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, envelope: str
) -> None:
    """The unknown credit is the oldest of 250 in its member's history: found on the last page."""
    client = client_for(sandbox, max_retries=0)
    (email,) = create_members(client, 1)
    sandbox.admin.configure(history_envelope=envelope, dedupe_window_s=0.0)
    rows = credit_rows(250, [email])
    ledger_path = tmp_path / "l.sqlite"
    sandbox.admin.set_faults(applied_then_503_rate=1.0, fault_routes=["credit", "history"])
    first = run_sync(client, rows[:1], config(verify_delay=0.1), ledger_path)
    assert first.count("unknown") == 1
    sandbox.admin.set_faults(**NO_FAULTS)
    for row in rows[1:]:  # 249 newer credits, sent by someone else
        client.credit_activity(
            email, row["activity"], num_points=row["points"], extra_data={"order_id": row["order_id"]}
        )
    second = run_sync(client, [], config(run_id="next", verify_delay=0.1), ledger_path)
    assert second.reconciled == {"credited": 1} and second.verified == 1 and second.resent == 0
    assert second.history_requests >= 3  # 100 a page: the oldest is on page 3
    assert len(applied_per_key(sandbox)) == 250 and set(applied_per_key(sandbox).values()) == {1}
